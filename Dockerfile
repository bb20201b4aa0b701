# airloop on the official Apache Airflow image: the Airflow version and the Python of requirements.lock, and
# airloop's own dependencies installed from requirements-runtime.lock (the lock's pins without its test and lint
# tools, `make lock` writes both; the image's constraints are Airflow's, the lock is ours).
# Built by `docker compose build`; docker-compose.yml runs every service from it (README: "Deploy for a team").
FROM apache/airflow:3.3.2-python3.11

ENV AIRLOOP_ROOT=/opt/airloop \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER root
# The state and MLflow's artifacts are volumes: made here, so the volumes start owned by airflow (uid 50000).
RUN mkdir -p /opt/airloop/state /opt/airloop/mlflow-artifacts \
 && chown -R airflow:root /opt/airloop && chmod 0700 /opt/airloop/state /opt/airloop/mlflow-artifacts
USER airflow

# The lock first: a change to airloop's code does not reinstall its dependencies.
COPY --chown=airflow:root requirements-runtime.lock pyproject.toml /opt/airloop/
RUN pip install --no-deps -r /opt/airloop/requirements-runtime.lock

COPY --chown=airflow:root include /opt/airloop/include
COPY --chown=airflow:root dags /opt/airloop/dags
COPY --chown=airflow:root plugins /opt/airloop/plugins
COPY --chown=airflow:root config /opt/airloop/config
COPY --chown=airflow:root deploy /opt/airloop/deploy
# Editable, so airloop finds config/ and dags/ beside its code; compiled, so no task process compiles it.
RUN pip install --no-deps -e /opt/airloop && python -m compileall -q /opt/airloop/include /opt/airloop/dags

WORKDIR /opt/airloop
