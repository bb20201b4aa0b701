#!/bin/bash
# Run once by the postgres image's entrypoint (docker-entrypoint-initdb.d) on the first start of docker-compose.yml's
# PostgreSQL: airloop's databases and roles (deploy/postgres-init.sql). The role passwords stay in the environment
# (AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD from .env); psql reads them with \getenv.
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}" "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in .env}"
psql --username "$POSTGRES_USER" --dbname postgres --no-psqlrc \
    --set airflow_role=airflow --set warehouse_db=warehouse --set airflow_db=airflow \
    --set mlflow_role=mlflow --set mlflow_db=mlflow --set mlflow_auth_db=mlflow_auth \
    --file /opt/airloop-init/postgres-init.sql
