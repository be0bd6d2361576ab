# One image for the Airflow components and the training pods (python -m include.training.train).
#   docker build --build-arg CODE_COMMIT=$(git rev-parse HEAD) -t modelops:$(git rev-parse --short HEAD) .
FROM apache/airflow:3.3.2-python3.11

USER root
# Java runs Spark for batch scoring; git lets lineage read a commit when CODE_COMMIT is not given.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless git \
 && rm -rf /var/lib/apt/lists/*
USER airflow

# The exact lock the tests ran with (its hash is recorded on every model version).
COPY --chown=airflow:root requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt

COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root config/ /opt/airflow/config/

ARG CODE_COMMIT=unknown
ENV PYTHONPATH=/opt/airflow \
    MODELOPS_CONFIG_DIR=/opt/airflow/config \
    MODELOPS_CODE_COMMIT=${CODE_COMMIT} \
    GX_ANALYTICS_ENABLED=false
