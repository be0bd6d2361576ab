"""Airflow side of training: the training tasks and the local-process and Kubernetes-pod operators."""
