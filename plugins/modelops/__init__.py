"""The Airflow side of the project: hooks, operators, task functions and assets over ``include/``."""
