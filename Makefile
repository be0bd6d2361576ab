# Model Ops on Airflow 3 — every target installs what it needs itself.
#   make demo   the lifecycle end to end on embedded defaults (SQLite, local training, local MLflow)
#   make test   the whole test suite
#   make up     Airflow on :8080, MLflow on :5000, Triton on :8000, all on loopback; make down stops them
#   make up-prod  the production stack on loopback: Airflow on PostgreSQL + Celery/Redis, MLflow on PostgreSQL
#               + S3, Triton (Airflow :8180, MLflow :5100, Triton :8100); make down-prod stops it

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STATE := $(CURDIR)/.modelops

export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AIRFLOW_HOME ?= $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export GX_ANALYTICS_ENABLED ?= false
export MLFLOW_TRACKING_URI ?= sqlite:///$(STATE)/mlflow/mlflow.db
# MLflow's download progress bar writes to stderr, which Airflow's logs show as errors.
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false

# The local stack (make up) is for one person on one machine: every server on loopback, DAGs active as
# soon as they are parsed (production keeps Airflow's default: paused at creation), and sized for a
# small machine: 4 concurrent tasks (LocalExecutor starts one worker process per slot), one API worker.
LOCAL_HOST ?= 127.0.0.1
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
TRITON_PORT ?= 8000
LOCAL_STACK_ENV = AIRFLOW__API__HOST=$(LOCAL_HOST) AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
  AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) AIRFLOW__API__WORKERS=1 \
  AIRFLOW__CORE__PARALLELISM=$${AIRFLOW__CORE__PARALLELISM:-4} \
  AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=$${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False} \
  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=$${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin} \
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "http", "extra": {"tracking_uri": "$(MLFLOW_TRACKING_URI)", "ui_url": "http://localhost:$(MLFLOW_PORT)"}}'

.PHONY: install triton demo test lint lock up down up-prod down-prod clean airflow

# Bytecode is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set every
# process (each Spark worker, each test's Airflow import) would compile mlflow, Airflow and Spark's Python again.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade >/dev/null
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Triton Inference Server (CPU, python backend) in its own virtualenv: nvidia-pytriton pins numpy<2.
triton: $(VENV)/.installed
	bash scripts/setup_triton.sh

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

# The demo and the local stack share AIRFLOW_HOME: DAGs the demo creates are active under make up too.
demo: export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION ?= False
demo: $(AIRFLOW_HOME)/airflow.db triton
	$(PY) scripts/demo.py

test: $(VENV)/.installed triton
	bash scripts/ensure_chromium.sh
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dags plugins include tests scripts bench

lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-dev.in --python-version 3.11 -o requirements-dev.txt

# Airflow's components as separate processes rather than `airflow standalone`, whose log servers listen
# on every interface; here the API server reads task logs from the local files instead.
up: $(AIRFLOW_HOME)/airflow.db triton
	mkdir -p $(STATE)/logs $(STATE)/triton/models
	$(PY) -m include.demo.datagen $(STATE)/data/credit_approval/train.parquet --rows 20000 --seed 1
	$(PY) scripts/prod_stack.py pools > /dev/null  # each model's one-slot pool for its alias moves
	@start() { name=$$1; shift; env $(LOCAL_STACK_ENV) setsid nohup "$$@" > $(STATE)/logs/$$name.log 2>&1 & \
	  echo $$! > $(STATE)/$$name.pid; }; \
	start api-server $(VENV)/bin/airflow api-server --host $(LOCAL_HOST) --port $(AIRFLOW_PORT) --workers 1; \
	start scheduler $(VENV)/bin/airflow scheduler --skip-serve-logs; \
	start dag-processor $(VENV)/bin/airflow dag-processor; \
	start triggerer $(VENV)/bin/airflow triggerer --skip-serve-logs; \
	start mlflow $(VENV)/bin/mlflow server --backend-store-uri $(MLFLOW_TRACKING_URI) --workers 1 \
	  --default-artifact-root $(STATE)/mlflow/artifacts --host $(LOCAL_HOST) --port $(MLFLOW_PORT); \
	start triton $(PY) -m include.serving.triton.server --repository $(STATE)/triton/models --host $(LOCAL_HOST) \
	  --http-port $(TRITON_PORT)
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT) (user admin, password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	@echo "MLflow UI:  http://localhost:$(MLFLOW_PORT)   Triton: http://localhost:$(TRITON_PORT)   logs: $(STATE)/logs/"

LOCAL_SERVICES := api-server scheduler dag-processor triggerer mlflow triton

down:
	@for name in $(LOCAL_SERVICES) airflow; do f=$(STATE)/$$name.pid; \
	  if [ -f $$f ]; then kill -- -$$(cat $$f) 2>/dev/null || true; rm -f $$f; fi; done

# The production stack of docker-compose.yaml on loopback, without containers (scripts/prod_stack.py): Airflow on
# PostgreSQL with the CeleryExecutor on Redis (api-server, scheduler, dag-processor, triggerer, celery worker), MLflow
# on PostgreSQL with S3 artifacts (moto's S3 server), Triton. Uses the PostgreSQL and Redis that already run; state in
# .modelops/prod. make up-prod PROD_ARGS='--unpaused --airflow-port 8280'; make down-prod stops every process
# (python scripts/prod_stack.py stop --purge also drops its databases).
up-prod: $(VENV)/.installed triton
	$(PY) scripts/prod_stack.py start $(PROD_ARGS)

down-prod:
	$(PY) scripts/prod_stack.py stop

# Airflow's CLI on the local stack's state: make airflow ARGS='connections add modelops_drift_webhook --conn-type generic --conn-password …'
airflow: $(AIRFLOW_HOME)/airflow.db
	env $(LOCAL_STACK_ENV) $(VENV)/bin/airflow $(ARGS)

clean: down
	rm -rf $(STATE)
