CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE modelops_ledger OWNER airflow;
