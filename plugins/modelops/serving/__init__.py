"""Airflow side of serving: deploy/rollback tasks, the Triton hook, operator and deferrable trigger."""
