"""Airflow side of monitoring: the hourly tasks (assess, alert, roll back, retrain)."""
