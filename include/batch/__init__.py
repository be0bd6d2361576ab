"""Batch: one date scored with Spark by one pinned model version (planning and the idempotent commit
in :mod:`~include.batch.scoring`, the ONNX worker that runs in Spark's Python processes in
:mod:`~include.batch.worker`)."""
