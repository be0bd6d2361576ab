"""Airflow side of batch scoring: the task that scores one date with Spark."""
