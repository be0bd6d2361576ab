"""Training: the one entrypoint every backend runs (``python -m include.training.train``), the
evaluation on the holdout split, and the attempts that share one MLflow run."""
