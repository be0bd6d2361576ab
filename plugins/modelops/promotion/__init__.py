"""Airflow side of promotion: the promotion tasks (gates, optional human approval, alias move)."""
