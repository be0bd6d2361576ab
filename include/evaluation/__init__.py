"""Evidence at evaluation: what every new model version carries besides its holdout metrics.

Computed by :func:`include.evaluation.evidence.log_evidence` (called from
:func:`include.training.evaluate.evaluate_run`) when the model's configuration has an ``evidence`` section
(:class:`include.config.EvidenceConfig`), and logged to the training run:

* :mod:`~include.evaluation.calibration`: expected calibration error and the reliability curve on the holdout,
  and the calibration that training applies on request (:func:`~include.evaluation.calibration.fit_model`);
* :mod:`~include.evaluation.slices`: the primary metric per value of configured columns (``slices`` gate);
* :mod:`~include.evaluation.fairness`: fairlearn's demographic parity and equalized odds differences per
  sensitive column (``fairness`` gate);
* :mod:`~include.evaluation.baseline`: a simpler model on the same split and preprocessing (``baseline`` gate);
* :mod:`~include.evaluation.explanations`: SHAP global feature importance, and
  :func:`~include.evaluation.explanations.top_features` for monitoring;
* :mod:`~include.evaluation.columns`: columns derived from features (``age_band`` from ``age``) for slices and fairness.

The gates themselves are pure decisions in :mod:`include.governance.gates` over the run's metrics.
Modules import numpy, pandas, scikit-learn, fairlearn and shap inside functions: the gates import the
metric-key helpers while Airflow parses DAG files.
"""
