-- One database of deploy/postgres-init.sql: :database, made if missing, owned by :owner with everything in it,
-- and closed to every other role (a new database lets PUBLIC connect).
\connect postgres
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') AS make_database \gset
\if :make_database
CREATE DATABASE :"database" OWNER :"owner";
\endif
ALTER DATABASE :"database" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
\connect :database
SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, :'owner')
  FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tableowner <> :'owner' \gexec
SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', schemaname, sequencename, :'owner')
  FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND sequenceowner <> :'owner' \gexec
SELECT format('ALTER VIEW %I.%I OWNER TO %I', schemaname, viewname, :'owner')
  FROM pg_views WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND viewowner <> :'owner' \gexec
