"""
### Batch score — one DAG per model in `config/models/` with a `batch:` section

Every day (and on demand), scores that day's new rows with Spark: the version's ONNX export (the
artifact Triton serves) with onnxruntime, or `mlflow.pyfunc.spark_udf` for a version that does not convert.

1. **pin_champion** resolves `@champion` to a fixed version once, at the start of the run, so a
   promotion during the run cannot mix two models.
2. **score** reads `batch.input_uri`, keeps the rows dated on the run's day (its data interval,
   UTC), writes predictions with the model version to `batch.output_uri/date=YYYY-MM-DD/`, and the
   same predictions with their features to the inference log (`source=batch`).

Idempotent: re-running a day overwrites that day's partitions, never appends duplicates. Spark runs
`local[*]` by default; `batch.spark_master` and `batch.spark_conf` point the same DAG at a cluster.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from include.dag_ids import Stage, dag_id
from modelops.batch import tasks as t
from modelops.dags import dag_args, register_per_model


def build(config):
    @dag(
        dag_id=dag_id(Stage.BATCH_SCORE, config.name),
        description=f"Daily Spark batch scoring of {config.name} with the pinned @champion",
        doc_md=__doc__,
        schedule=config.batch.schedule,
        **dag_args(config, "batch", "spark", retry_delay=timedelta(minutes=2)),
    )
    def batch_score():
        # main flow
        t.score(config.name, t.pin_champion(config.name))

    return batch_score()


register_per_model(globals(), build, when=lambda config: config.batch is not None)
