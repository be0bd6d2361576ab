"""Plain-Python building blocks of the Model Ops project (no Airflow imports)."""
