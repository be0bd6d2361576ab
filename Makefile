# Model Ops on Airflow 3 — every target installs what it needs itself.
#   make demo   the lifecycle end to end on embedded defaults (SQLite, local training, local MLflow)
#   make test   the whole test suite
#   make up     Airflow UI (airflow standalone) on :8080 and MLflow UI on :5000; make down stops them

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

.PHONY: install triton demo test lint lock up down clean

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

demo: $(AIRFLOW_HOME)/airflow.db triton
	$(PY) scripts/demo.py

test: $(VENV)/.installed triton
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dags plugins include tests scripts bench

lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-dev.in --python-version 3.11 -o requirements-dev.txt

up: $(AIRFLOW_HOME)/airflow.db triton
	mkdir -p $(STATE)/logs $(STATE)/triton/models
	$(PY) -m include.datagen $(STATE)/data/credit_approval/train.parquet --rows 20000 --seed 1
	setsid nohup $(VENV)/bin/airflow standalone > $(STATE)/logs/airflow.log 2>&1 & echo $$! > $(STATE)/airflow.pid
	setsid nohup $(VENV)/bin/mlflow server --backend-store-uri $(MLFLOW_TRACKING_URI) \
	  --default-artifact-root $(STATE)/mlflow/artifacts --host 127.0.0.1 --port 5000 \
	  > $(STATE)/logs/mlflow.log 2>&1 & echo $$! > $(STATE)/mlflow.pid
	setsid nohup $(PY) -m include.triton.server --repository $(STATE)/triton/models --http-port 8000 \
	  > $(STATE)/logs/triton.log 2>&1 & echo $$! > $(STATE)/triton.pid
	@echo "Airflow UI: http://localhost:8080 (admin password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	@echo "MLflow UI:  http://localhost:5000   Triton: http://localhost:8000   logs: $(STATE)/logs/"

down:
	@for f in $(STATE)/airflow.pid $(STATE)/mlflow.pid $(STATE)/triton.pid; do \
	  if [ -f $$f ]; then kill -- -$$(cat $$f) 2>/dev/null || true; rm -f $$f; fi; done

clean: down
	rm -rf $(STATE)
