-- The databases of docker-compose.yml's PostgreSQL, made on its first start: Airflow's metadata (and the Celery
-- result backend), airloop's warehouse, MLflow's tracking store and MLflow's users.
CREATE DATABASE airflow;
CREATE DATABASE warehouse;
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
