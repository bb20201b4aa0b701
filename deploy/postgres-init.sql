-- The databases and roles of docker-compose.yml's PostgreSQL (deploy/postgres-init.sh runs this with psql on the
-- database's first start; run it again on an existing one to bring it to this layout). Two login roles, each
-- owning only its own databases, so a task (which runs as `airflow`) cannot read or change MLflow's registry or
-- its users behind MLflow's login:
--   airflow: Airflow's metadata (and the Celery result backend) and airloop's warehouse;
--   mlflow:  MLflow's tracking store and its users.
-- Safe to run again: what exists is kept, its password set again, and the databases and every table, sequence
-- and view in them given to their role (a database made before the roles existed belonged to `postgres`).
-- The names come as psql variables (tests/integration/test_compose_roles.py runs this with names of its own); the
-- passwords from the environment through \getenv, never a command line.
\set ON_ERROR_STOP on
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
-- Both set and not empty, or stop here before anything is made (an unset one is a syntax error naming it).
SELECT :'airflow_password' <> '' AS airflow_password_set \gset
SELECT :'mlflow_password' <> '' AS mlflow_password_set \gset
\if :airflow_password_set
\else
DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD is empty'; END $$;
\endif
\if :mlflow_password_set
\else
DO $$ BEGIN RAISE EXCEPTION 'MLFLOW_DB_PASSWORD is empty'; END $$;
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'airflow_role') AS make_role \gset
\if :make_role
CREATE ROLE :"airflow_role";
\endif
ALTER ROLE :"airflow_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'airflow_password';
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'mlflow_role') AS make_role \gset
\if :make_role
CREATE ROLE :"mlflow_role";
\endif
ALTER ROLE :"mlflow_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';

\set database :airflow_db
\set owner :airflow_role
\ir postgres-init-database.sql
\set database :warehouse_db
\ir postgres-init-database.sql
\set database :mlflow_db
\set owner :mlflow_role
\ir postgres-init-database.sql
\set database :mlflow_auth_db
\ir postgres-init-database.sql
