-- The databases and roles of docker-compose.yml's PostgreSQL, made once on its first start (deploy/postgres-init.sh
-- runs this with psql). Two login roles, each owning only its own databases, so a task (which runs as `airflow`)
-- cannot read or change MLflow's registry or its users behind MLflow's login:
--   airflow: Airflow's metadata (and the Celery result backend) and airloop's warehouse;
--   mlflow:  MLflow's tracking store and its users.
-- The names come as psql variables (tests/integration/test_compose_roles.py runs this with names of its own); the
-- passwords from the environment through \getenv, never a command line.
\set ON_ERROR_STOP on
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
-- Both set, or stop here (a syntax error naming the unset one) before anything is made.
SELECT :'airflow_password' <> '' AS airflow_password_set \gset
SELECT :'mlflow_password' <> '' AS mlflow_password_set \gset
CREATE ROLE :"airflow_role" LOGIN PASSWORD :'airflow_password';
CREATE ROLE :"mlflow_role" LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_role";
CREATE DATABASE :"warehouse_db" OWNER :"airflow_role";
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_role";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_role";
-- New databases let every role connect (PUBLIC): only each owner may.
REVOKE ALL ON DATABASE :"airflow_db", :"warehouse_db", :"mlflow_db", :"mlflow_auth_db" FROM PUBLIC;
