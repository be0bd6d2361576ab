"""Airflow side of governance: the S3 archive store (through the Amazon provider's ``S3Hook``)."""
