"""Model configuration: one YAML file per model under ``config/models/``, validated into typed objects.

A wrong key, a wrong type or a missing field fails with :class:`ConfigError`, whose message names
the file and the dotted key (``credit_approval.yaml: gates.minimum: Input should be a valid number``).
Strings may reference environment variables as ``${VAR}`` or ``${VAR:-default}``; relative paths
are resolved against the project root, so the same file works on a laptop and in a pod.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from include import settings
from include.settings import PROJECT_ROOT

ColumnType = Literal["int", "float", "category", "string", "bool", "timestamp"]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A model configuration file is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str
    type: ColumnType


class DataChecks(_Strict):
    """What validation refuses besides the expectation suite, derived from the declared columns.

    Non-finite numbers are always refused; the rest is tunable per model.
    """

    max_abs_value: float = Field(1e12, gt=0, description="Numbers beyond +/- this are implausible (and overflow training's arithmetic).")
    max_future_minutes: float = Field(60, ge=0, description="Event timestamps later than the run's logical date plus this are refused.")
    max_age_days: float | None = Field(None, gt=0, description="Event timestamps older than the run's logical date minus this are refused; none = no limit.")
    classes: list[int | str] = Field(default_factory=lambda: [0, 1], min_length=2, max_length=2, description="The target's classes (binary; the second is the positive class); other labels are refused.")
    min_rows_per_class: int = Field(10, ge=1, description="Rows each class needs in the training split and in the holdout split.")

    @model_validator(mode="after")
    def _distinct_classes(self) -> DataChecks:
        if self.classes[0] == self.classes[1]:
            raise ValueError(f"classes: must be two different values, got {self.classes}")
        return self


class DatasetConfig(_Strict):
    uri: str = Field(description="Default dataset location (file, directory of parquet, or URI).")
    id_column: str
    timestamp_column: str
    target: Column
    outcome: Column | None = Field(None, description="Business outcome that arrives after prediction.")
    features: list[Column] = Field(min_length=1)
    expectation_suite: str = Field(description="GX suite JSON, relative to config/.")
    checks: DataChecks = DataChecks()

    @model_validator(mode="after")
    def _distinct_columns(self) -> DatasetConfig:
        names = [c.name for c in self.all_columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns declared twice: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _classes_of_target_type(self) -> DatasetConfig:
        wanted = {"int": int, "bool": int, "category": str, "string": str}.get(self.target.type)
        if wanted is None:
            raise ValueError(f"target: type {self.target.type} cannot be a class label; use int, bool, category or string")
        wrong = [c for c in self.checks.classes if not isinstance(c, wanted)]
        if wrong:
            raise ValueError(f"checks.classes: {wrong} do not match the target's type {self.target.type}")
        return self

    @property
    def all_columns(self) -> list[Column]:
        extra = [Column(name=self.id_column, type="string"), Column(name=self.timestamp_column, type="timestamp")]
        return [*extra, *self.features, self.target, *([self.outcome] if self.outcome else [])]

    @property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.type for c in self.all_columns}

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]


class ModelSpec(_Strict):
    flavor: Literal["sklearn"] = "sklearn"
    estimator: str = Field(pattern=r"^sklearn\.[A-Za-z0-9_.]+\.[A-Za-z0-9_]+$")
    params: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    holdout_fraction: float = Field(0.2, gt=0, lt=0.5)
    random_state: int = 42


class Resources(_Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: int = Field(0, ge=0, description="nvidia.com/gpu count")


# Kubernetes' rules for a Secret's name and for its keys.
_SecretName = Annotated[
    str, StringConstraints(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
]
_SecretKey = Annotated[str, StringConstraints(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class MlflowCredentialsSecret(_Strict):
    """A Kubernetes Secret (in the pod's namespace) from which the training pod reads its MLflow credentials.

    Basic auth (``username_key`` + ``password_key``, the default when no key is named), a bearer
    token (``token_key``), and/or the whole tracking URI (``tracking_uri_key``, for a URI whose
    credentials cannot be taken out of it, e.g. a database URI). Only the names go into the pod
    spec, as ``secretKeyRef``; never the values.
    """

    name: _SecretName = Field(description="The Secret's name (a DNS subdomain, e.g. mlflow-credentials).")
    username_key: _SecretKey | None = None
    password_key: _SecretKey | None = None
    token_key: _SecretKey | None = None
    tracking_uri_key: _SecretKey | None = None

    @model_validator(mode="before")
    @classmethod
    def _basic_by_default(cls, data: object) -> object:
        keys = ("username_key", "password_key", "token_key", "tracking_uri_key")
        if isinstance(data, dict) and not any(data.get(k) for k in keys):
            return {**data, "username_key": "username", "password_key": "password"}
        return data

    @model_validator(mode="after")
    def _one_scheme(self) -> MlflowCredentialsSecret:
        if bool(self.username_key) != bool(self.password_key):
            raise ValueError("username_key and password_key go together")
        if self.token_key and self.username_key:
            raise ValueError("token_key: use either token_key or username_key + password_key, not both")
        return self


class KubernetesTraining(_Strict):
    image: str = "modelops:latest"
    namespace: str = "default"
    service_account: str | None = None
    kubernetes_conn_id: str = "kubernetes_default"
    requests: Resources = Resources(cpu="1", memory="2Gi")
    limits: Resources = Resources(cpu="2", memory="4Gi")
    node_selector: dict[str, str] = Field(default_factory=dict)
    startup_timeout_seconds: int = Field(600, gt=0)
    mlflow_credentials_secret: MlflowCredentialsSecret | None = Field(
        None, description="Where the pod gets MLflow credentials; required when the MLflow connection has any.")


class TrainingConfig(_Strict):
    backend: Literal["local", "kubernetes"] = "local"
    schedule: str | None = Field(None, description="Cron or preset for scheduled retraining; none = on demand")
    max_age_days: float | None = Field(None, gt=0, description="The champion is stale when its training data is older than this (days; freshness_<model> checks it daily, warns and proposes a retraining); none = never stale.")
    timeout_minutes: int = Field(60, gt=0)
    kubernetes: KubernetesTraining = KubernetesTraining()


class GatesConfig(_Strict):
    primary_metric: Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"] = "roc_auc"
    minimum: float
    max_regression: float = Field(0.0, ge=0, description="Allowed drop vs the champion, in metric units.")
    shadow: ShadowGate | None = Field(None, description="Promote only after the challenger won on live traffic "
                                      "(serving.challenger.mode shadow or canary); none = no live evidence needed.")

    @property
    def higher_is_better(self) -> bool:
        return self.primary_metric != "log_loss"


# The defaults are known python-stdnum modules and phonenumbers regions (tests check them); only other
# entries are looked up at load, so a config without them imports neither library while DAGs are parsed.
_SCREENING_DETECTORS = ("email", "iban", "card", "national_id", "phone")
_SCREENING_NATIONAL_IDS = ("us.ssn", "nl.bsn", "de.idnr", "fr.nir", "es.dni")
_SCREENING_PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES")


class ScreeningConfig(_Strict):
    """Personal data looked for in a training batch and in each monitored hour (:mod:`include.governance.screening`).

    A training batch with more than ``max_flagged_rows`` flagged rows is quarantined; an hour with more is a
    ``personal_data`` finding at ``inference_tier`` (``critical`` makes the hour's alert critical; it never
    rolls back or retrains: the data comes from upstream). Only counts are reported, never values.
    """

    enabled: bool = True
    columns: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, min_length=1, description="Columns screened; none = every text (string/category) column the data has.")
    detectors: list[Literal["email", "iban", "card", "national_id", "phone"]] = Field(
        default_factory=lambda: list(_SCREENING_DETECTORS), min_length=1,
        description="What is looked for: email, iban, card (payment card numbers), national_id, phone.")
    national_ids: list[str] = Field(
        default_factory=lambda: list(_SCREENING_NATIONAL_IDS),
        description="python-stdnum modules of the national identifiers looked for (stdnum.<name>, e.g. us.ssn).")
    phone_regions: list[str] = Field(
        default_factory=lambda: list(_SCREENING_PHONE_REGIONS),
        description="Regions whose national phone formats are recognised; international (+..) numbers always are.")
    max_flagged_rows: int = Field(0, ge=0, description="Flagged rows tolerated in a batch or an hour.")
    inference_tier: Literal["warning", "critical"] = Field(
        "warning", description="Tier of an hour whose inputs hold personal data.")

    @model_validator(mode="after")
    def _known_modules_and_regions(self) -> ScreeningConfig:
        import importlib

        for i, name in enumerate(self.national_ids):
            if name in _SCREENING_NATIONAL_IDS:
                continue
            if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", name):
                raise ValueError(f"national_ids.{i}: {name!r} is not a python-stdnum module name (e.g. us.ssn)")
            try:
                module = importlib.import_module(f"stdnum.{name}")
            except ImportError:
                raise ValueError(f"national_ids.{i}: unknown python-stdnum module {name!r} (no stdnum.{name})") from None
            if not (callable(getattr(module, "is_valid", None)) and callable(getattr(module, "compact", None))):
                raise ValueError(f"national_ids.{i}: stdnum.{name} is not a number module (no is_valid/compact)")
        for i, code in enumerate(self.phone_regions):
            if code in _SCREENING_PHONE_REGIONS:
                continue
            import phonenumbers

            if code not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"phone_regions.{i}: {code!r} is not a region phonenumbers knows "
                                 "(ISO 3166 alpha-2, upper case, e.g. GB)")
        return self


class ComplianceConfig(_Strict):
    labels: dict[str, str] = Field(default_factory=dict, description="Tags set on every new version.")
    required: list[str] = Field(default_factory=list, description="Tags a version must carry to be promoted.")
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig, description="Personal-data screening of training batches and monitored hours.")


class InferenceLogConfig(_Strict):
    """The server-side inference log Triton's python backend writes (:mod:`include.serving.triton.request_log`)."""

    enabled: bool = Field(True, description="Log every row Triton scores; off serves unmonitored (benchmarks only).")
    flush_rows: int = Field(10_000, ge=1, description="Rows buffered per model instance before a row group is written.")
    flush_seconds: float = Field(5.0, gt=0, le=3600, description="Seconds after which buffered rows are written anyway; "
                                 "a crash loses at most this much traffic (or flush_rows rows).")


class ChallengerServingConfig(_Strict):
    """How the ``@challenger`` meets live traffic before its promotion (:mod:`include.serving.shadow`)."""

    mode: Literal["off", "shadow", "canary"] = Field(
        "off", description="shadow: scored on every live request, never answers; canary: answers canary_fraction "
        "of requests (sticky per routing key); off: not loaded before promotion.")
    canary_fraction: float = Field(0.05, gt=0, lt=1, description="Share of routing keys the challenger answers (canary).")
    timeout_ms: float = Field(100, gt=0, description="Deadline of a challenger request; past it a canary request is "
                              "answered by the champion and a shadow row is not logged.")


class ServingConfig(_Strict):
    inference_log: InferenceLogConfig = InferenceLogConfig()
    challenger: ChallengerServingConfig = ChallengerServingConfig()


class ShadowGate(_Strict):
    """Promotion waits for live evidence of the challenger (shadow or canary rows) and judges it.

    The evidence: the hours monitoring assessed with the candidate as challenger. It passes with at
    least ``min_hours`` such hours and ``min_requests`` compared requests, when the challenger's
    decisions agree with the champion's on at least ``min_agreement`` of them and no KPI is worse than
    the champion's by more than its tolerance. Until then the promotion waits (deferred), at most
    ``deadline_hours``; then it fails with the evidence it has.
    """

    min_hours: int = Field(1, ge=1, description="Assessed hours with the candidate in shadow/canary.")
    min_requests: int = Field(100, ge=1, description="Requests both versions scored (shadow) or the challenger answered (canary).")
    min_agreement: float = Field(0.0, ge=0, le=1, description="Share of requests on which both decide alike (shadow).")
    max_kpi_drop: dict[str, float] = Field(default_factory=dict, description="KPI name -> how much worse than the "
                                           "champion's (absolute, in the KPI's units) the challenger may be.")
    deadline_hours: float = Field(72, gt=0, description="How long promotion waits for the evidence.")
    poll_seconds: float = Field(300, gt=0, description="How often the waiting promotion looks for new evidence.")


class ApprovalConfig(_Strict):
    required: bool = False
    timeout_hours: float = Field(72, gt=0)


class BatchConfig(_Strict):
    input_uri: str = Field(description="New data (file or parquet folder); the rows dated on the run's day are scored.")
    output_uri: str = Field(description="Predictions, partitioned by date=YYYY-MM-DD.")
    schedule: str | None = "@daily"
    spark_master: str = Field("local[*]", pattern=r"^(local(\[[0-9*]+\])?|spark://.+|k8s://.+|yarn)$")
    spark_conf: dict[str, str] = Field(default_factory=dict)


class DriftThresholds(_Strict):
    drift_share: float = Field(0.5, gt=0, le=1, description="Dataset drift when this share of features drifted (Evidently's definition).")
    warning: float = Field(0.3, gt=0, le=1, description="Share of drifted features that raises a warning.")
    critical: float = Field(0.5, gt=0, le=1, description="Share of drifted features that, with a KPI drop, is critical.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.critical < self.warning:
            raise ValueError(f"critical ({self.critical}) must be >= warning ({self.warning})")
        return self


KpiMetric = Literal["approval_rate", "precision", "recall", "outcome_per_unit"]


class KpiConfig(_Strict):
    """A business KPI computed per hour from predictions (and outcomes, once they arrive).

    ``approval_rate``: share of predictions below ``decision_threshold`` (approved).
    ``precision`` / ``recall``: of the positive decision (score >= threshold) on labelled rows.
    ``outcome_per_unit``: sum of the outcome column / sum of ``per`` over approved, labelled rows
    (e.g. money repaid per money lent).
    """

    name: Identifier
    metric: KpiMetric
    description: str = ""
    per: str | None = Field(None, description="Denominator column of outcome_per_unit (a feature).")
    max_drop: float = Field(gt=0, description="Critical when the KPI falls this far (absolute) below its baseline.")
    min_rows: int = Field(30, ge=1, description="Rows in its denominator (labelled ones for outcome KPIs) needed.")

    @model_validator(mode="after")
    def _per_only_for_outcomes(self) -> KpiConfig:
        if (self.metric == "outcome_per_unit") != (self.per is not None):
            raise ValueError("per: required by (and only by) metric outcome_per_unit")
        return self

    @property
    def needs_outcomes(self) -> bool:
        return self.metric != "approval_rate"


EstimatedMetric = Literal["roc_auc", "precision", "recall", "accuracy"]


class EstimatedMetricConfig(_Strict):
    """A metric estimated every hour without labels (CBPE, :mod:`include.monitoring.performance_estimation`)
    and how far its estimate may fall below the version's holdout value.

    A fall counts only when the holdout value also lies above the estimate's band (estimate + 3 sampling
    errors): beyond sampling noise. ``precision`` / ``recall`` / ``accuracy``: of the decision
    score >= ``decision_threshold`` (the positive class).
    """

    metric: EstimatedMetric
    max_drop: float = Field(gt=0, le=1, description="Warning when the estimate falls this far (absolute) below the holdout value.")
    critical_drop: float | None = Field(None, gt=0, le=1, description="Critical (rollback + retrain) when it falls this far; none = never critical.")

    @model_validator(mode="after")
    def _critical_beyond_warning(self) -> EstimatedMetricConfig:
        if self.critical_drop is not None and self.critical_drop < self.max_drop:
            raise ValueError(f"critical_drop ({self.critical_drop}) must be >= max_drop ({self.max_drop})")
        return self


class EstimatedPerformanceConfig(_Strict):
    """Label-free performance estimation of each monitored hour (NannyML's CBPE, fitted on the served
    version's holdout predictions): estimates with confidence bands, findings ``estimated.<metric>``."""

    metrics: list[EstimatedMetricConfig] = Field(default_factory=list, description="Metrics estimated every hour; empty = no estimation.")
    calibrate: bool = Field(True, description="NannyML's step: calibrate the scores (isotonic, fitted on the holdout) when that lowers their calibration error in cross-validation.")
    min_labelled_rows: int = Field(30, ge=1, description="Labelled rows an hour needs before the realised value and the estimate's error are recorded.")

    @model_validator(mode="after")
    def _distinct_metrics(self) -> EstimatedPerformanceConfig:
        names = [m.metric for m in self.metrics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metrics: {', '.join(twice)} listed twice")
        return self


class MonitoringConfig(_Strict):
    schedule: str | None = "@hourly"
    cold_start_days: float = Field(7, ge=0, description="No drift alerts this long after a deployment.")
    min_rows: int = Field(100, ge=1, description="Fewer predictions in the hour: nothing is decided.")
    decision_threshold: float = Field(0.5, gt=0, lt=1, description="Score at or above which the business declines.")
    drift: DriftThresholds = DriftThresholds()
    kpis: list[KpiConfig] = Field(default_factory=list)
    baseline_days: float = Field(3, gt=0, description="KPI baseline: the champion's first healthy days after cold start.")
    outcomes_uri: str | None = Field(None, description="Delayed outcomes (parquet, date=YYYY-MM-DD partitions).")
    outcome_delay_days: int = Field(30, ge=0, description="How long after a prediction its outcome may arrive.")
    cooldown_hours: float = Field(6, ge=0, description="An alert is not repeated this soon unless it worsens.")
    report_sample_rows: int = Field(5000, ge=100, description="Rows per side in the human-facing Evidently report.")
    data_quality_warning: float = Field(0.01, gt=0, le=1, description="Share of the hour's rows with an unusable value in one column (missing, wrong type, non-finite) or an unusable prediction that warns.")
    invalid_predictions_critical: float | None = Field(0.5, gt=0, le=1, description="Share of the hour's predictions missing, NaN, infinite or outside [0, 1] that is critical (the served version is broken: roll back); none = never critical.")
    traffic_lookback_hours: int = Field(24, ge=1, description="An hour without predictions warns when the median of the hours assessed this long before it reached min_rows.")
    estimated_performance: EstimatedPerformanceConfig = Field(default_factory=EstimatedPerformanceConfig, description="Label-free performance estimation (CBPE) of each hour; off without metrics.")


class AlertsConfig(_Strict):
    slack_conn_id: str = Field("slack_default", description="Slack connection; when absent, alerts go to the log.")
    channel: str | None = Field(None, description="Override the connection's channel.")


# An optional setting given as "${VAR:-}" in YAML: an empty value means "not set".
_EmptyIsNone = Annotated[str | None, BeforeValidator(lambda v: v if v != "" else None)]


class QualityFloor(_Strict):
    """A version whose monitored KPI stayed below ``minimum`` over its last ``hours`` assessed hours is retired."""

    kpi: Identifier = Field(description="A KPI name from monitoring.kpis.")
    minimum: float
    hours: int = Field(24, ge=1, description="How many of the version's last assessed hours are averaged.")


class RetirementConfig(_Strict):
    """Monthly retirement: which versions are archived, unloaded and tagged retired (never the live ones)."""

    schedule: str | None = Field("@monthly", description="Cron or preset of the retire DAG; none = manual only.")
    superseded_days: float | None = Field(90, ge=0, description="Retire a version holding no alias for this long (0: as soon as it holds none); none = never for this reason.")
    quality_floor: QualityFloor | None = Field(None, description="Retire a version whose last monitored hours were below a KPI floor.")
    unusable_data_tag: str = Field("data.unusable", min_length=1, description="A version (or its training run) carrying this tag with a true value was trained on data that may no longer be used.")
    manual: list[Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)]] = Field(
        default_factory=list, description="Versions to retire on the next run (still never a protected one); numbers or strings.")
    archive_uri: _EmptyIsNone = Field(None, description="Archive root: a folder or file:// URI, or s3://bucket/prefix; none = <state folder>/archive.")
    storage_class: _EmptyIsNone = Field(None, description="S3 storage class of archived objects (e.g. GLACIER, DEEP_ARCHIVE); none = the bucket's default.")
    aws_conn_id: str = Field("aws_default", description="Airflow connection of the S3 archive.")


# --- evidence at evaluation (include/evaluation) and the gates that use it (include/governance/gates.py) ---

_BandLabel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-. ]{1,64}$")]
_ESTIMATOR_PATTERN = r"^sklearn\.[A-Za-z0-9_.]+\.[A-Za-z0-9_]+$"


class DerivedColumn(_Strict):
    """A column computed at evaluation from a numeric feature by binning (``age_band`` from ``age``), for slices
    and fairness: no new field in the data, the expectation suite or the served model's inputs.

    ``bins``: increasing cut points; band ``i`` holds ``bins[i-1] <= value < bins[i]`` (left-closed), the first
    band everything below ``bins[0]``, the last everything at or above ``bins[-1]``. Labels default to
    ``lt30``, ``30-45``, ``45-60``, ``ge60`` for ``bins: [30, 45, 60]``; a missing value is the band ``missing``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Identifier
    source: str = Field(alias="from", description="The numeric feature binned.")
    bins: list[float] = Field(min_length=1, description="Increasing cut points (left-closed bands).")
    labels: list[_BandLabel] | None = Field(None, description="One per band (len(bins) + 1); default lt<b0>, <b0>-<b1>, ..., ge<bn>.")

    @model_validator(mode="after")
    def _increasing_and_labelled(self) -> DerivedColumn:
        if any(b >= a for a, b in zip(self.bins[1:], self.bins, strict=False)):
            raise ValueError(f"bins: must be strictly increasing, got {self.bins}")
        if self.labels is not None:
            if len(self.labels) != len(self.bins) + 1:
                raise ValueError(f"labels: {len(self.bins) + 1} needed (one per band), got {len(self.labels)}")
            if len(set(self.labels)) != len(self.labels) or "missing" in self.labels:
                raise ValueError("labels: must be distinct and not 'missing' (the band of missing values)")
        return self

    @property
    def band_labels(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)

        def text(b: float) -> str:
            return f"{b:g}"

        middle = [f"{text(a)}-{text(b)}" for a, b in zip(self.bins, self.bins[1:], strict=False)]
        return [f"lt{text(self.bins[0])}", *middle, f"ge{text(self.bins[-1])}"]


class CalibrationConfig(_Strict):
    """Probability calibration: measured on the holdout always (ECE + reliability curve), applied in training on request.

    ``method``: ``sigmoid`` (Platt) or ``isotonic``, scikit-learn's ``CalibratedClassifierCV`` around the
    estimator step (``ensemble=False``: one estimator fitted on the whole training split, its calibrator on
    ``cv``-fold out-of-fold scores); ``none``: never calibrate. ``isotonic`` models cannot be served: skl2onnx
    exports isotonic calibration as a nearest-threshold lookup instead of scikit-learn's interpolation, so the
    ONNX export's parity check refuses them.
    """

    method: Literal["sigmoid", "isotonic", "none"] = Field("none", description="sigmoid | isotonic | none (never calibrate).")
    max_ece: float | None = Field(
        None, gt=0, le=1, description="Calibrate only when the uncalibrated model's out-of-fold ECE on the training split exceeds this; none = always (unless method is none).")
    bins: int = Field(10, ge=2, le=100, description="Equal-width probability bins of the ECE and the reliability curve.")
    cv: int = Field(5, ge=2, le=20, description="Stratified folds of the out-of-fold scores (decision and calibrator).")


class SlicesConfig(_Strict):
    """The primary metric per value of each column, and the ``slices`` gate against the champion's."""

    columns: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        min_length=1, description="Features or derived columns; one slice per value (band).")
    min_rows: int = Field(200, ge=1, description="Holdout rows a slice needs on both sides to be gated.")
    tolerance: float | None = Field(
        0.05, ge=0, description="Allowed drop vs the champion on any gated slice, in metric units; none = logged only.")


class FairnessConfig(_Strict):
    """fairlearn's group differences of the decision (score >= monitoring.decision_threshold) per sensitive column."""

    sensitive_features: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        min_length=1, description="Features or derived columns (e.g. age_band).")
    max_demographic_parity_difference: float | None = Field(None, ge=0, le=1, description="Gate; none = logged only.")
    max_equalized_odds_difference: float | None = Field(None, ge=0, le=1, description="Gate; none = logged only.")
    min_group_rows: int = Field(30, ge=1, description="Groups with fewer holdout rows are left out of the differences.")


class BaselineConfig(_Strict):
    """A simpler model trained on the same split, through the same preprocessing as the candidate."""

    estimator: str = Field("sklearn.linear_model.LogisticRegression", pattern=_ESTIMATOR_PATTERN)
    params: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    margin: float | None = Field(
        0.0, description="The candidate's primary metric must beat the baseline's by this (metric units; negative: may trail it by at most that much); none = logged only.")


class ExplanationsConfig(_Strict):
    """SHAP global feature importance per version (mean |SHAP value| per feature on holdout rows)."""

    enabled: bool = True
    top_k: int = Field(5, ge=1, le=50, description="Features in the version tag shap.top_features.")
    sample_rows: int = Field(300, ge=10, description="Holdout rows explained by the tree / linear explainer.")
    agnostic_rows: int = Field(40, ge=5, description="Rows explained by the model-agnostic (permutation) explainer, which is slower.")


class EvidenceConfig(_Strict):
    """What every new version carries from evaluation, and what the ``slices``, ``fairness`` and ``baseline`` gates
    use. A sub-section left out is neither computed nor gated; without ``evidence`` nothing of it is."""

    derived_columns: list[DerivedColumn] = Field(default_factory=list, description="Columns binned from numeric features.")
    calibration: CalibrationConfig = CalibrationConfig()
    slices: SlicesConfig | None = None
    fairness: FairnessConfig | None = None
    baseline: BaselineConfig | None = None
    explanations: ExplanationsConfig = ExplanationsConfig()

    @model_validator(mode="after")
    def _distinct_derived(self) -> EvidenceConfig:
        names = [d.name for d in self.derived_columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"derived_columns: declared twice: {', '.join(dupes)}")
        return self


class ModelConfig(_Strict):
    name: Identifier
    description: str = ""
    owner: str
    dataset: DatasetConfig
    model: ModelSpec
    training: TrainingConfig = TrainingConfig()
    gates: GatesConfig
    compliance: ComplianceConfig = ComplianceConfig()
    approval: ApprovalConfig = ApprovalConfig()
    batch: BatchConfig | None = Field(None, description="Daily batch scoring with Spark; none = online only.")
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertsConfig = AlertsConfig()
    retirement: RetirementConfig = RetirementConfig()
    evidence: EvidenceConfig | None = Field(
        None, description="Evidence at evaluation (calibration, slices, fairness, baseline, SHAP) and its gates; none = neither.")

    source: Path | None = Field(None, exclude=True)

    @property
    def registered_model_name(self) -> str:
        return self.name

    @property
    def experiment_name(self) -> str:
        return f"modelops/{self.name}"

    @property
    def suite_path(self) -> Path:
        """The expectation suite, relative to the config folder this file lives in."""
        base = self.source.parent.parent if self.source else settings.config_dir()
        return resolve_path(self.dataset.expectation_suite, base=base)

    @model_validator(mode="after")
    def _kpi_columns(self) -> ModelConfig:
        for i, kpi in enumerate(self.monitoring.kpis):
            if kpi.per is not None and kpi.per not in self.dataset.feature_names:
                raise ValueError(f"monitoring.kpis.{i}.per: {kpi.per!r} is not a feature")
            if kpi.metric == "outcome_per_unit" and self.dataset.outcome is None:
                raise ValueError(f"monitoring.kpis.{i}.metric: outcome_per_unit needs dataset.outcome")
        if self.gates.shadow is not None:
            if self.serving.challenger.mode == "off":
                raise ValueError("gates.shadow: needs serving.challenger.mode shadow or canary (live evidence)")
            unknown = sorted(set(self.gates.shadow.max_kpi_drop) - {k.name for k in self.monitoring.kpis})
            if unknown:
                raise ValueError(f"gates.shadow.max_kpi_drop: {', '.join(unknown)} not in monitoring.kpis")
        floor = self.retirement.quality_floor
        if floor is not None and floor.kpi not in {k.name for k in self.monitoring.kpis}:
            raise ValueError(f"retirement.quality_floor.kpi: {floor.kpi!r} is not one of monitoring.kpis")
        return self

    @model_validator(mode="after")
    def _evidence_columns(self) -> ModelConfig:
        evidence = self.evidence
        if evidence is None:
            return self
        types = {c.name: c.type for c in self.dataset.features}
        for i, derived in enumerate(evidence.derived_columns):
            if derived.name in self.dataset.column_types:
                raise ValueError(f"evidence.derived_columns.{i}.name: {derived.name!r} is already a dataset column")
            if types.get(derived.source) not in ("int", "float"):
                raise ValueError(f"evidence.derived_columns.{i}.from: {derived.source!r} is not a numeric (int/float) feature")
        known = set(types) | {d.name for d in evidence.derived_columns}
        lists = [("slices.columns", evidence.slices.columns if evidence.slices else []),
                 ("fairness.sensitive_features", evidence.fairness.sensitive_features if evidence.fairness else [])]
        for key, columns in lists:
            for i, column in enumerate(columns):
                if column not in known:
                    raise ValueError(f"evidence.{key}.{i}: {column!r} is neither a feature nor one of evidence.derived_columns")
                if types.get(column) in ("int", "float"):
                    raise ValueError(f"evidence.{key}.{i}: {column!r} is numeric: group by bands of it "
                                     "(evidence.derived_columns: {name, from, bins})")
        return self


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; an unset variable without default is an error."""

    def _sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_REF.sub(_sub, value)


def resolve_path(value: str, *, base: Path = PROJECT_ROOT) -> Path:
    path = Path(value.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve_uri(value: str) -> str:
    """A dataset URI with env references expanded; relative local paths become absolute."""
    value = expand_env(value)
    if "://" in value and not value.startswith("file://"):
        return value
    return str(resolve_path(value))


def _expand_tree(node: object, key: str, source: Path) -> object:
    if isinstance(node, dict):
        return {k: _expand_tree(v, f"{key}.{k}" if key else str(k), source) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, f"{key}.{i}", source) for i, v in enumerate(node)]
    if isinstance(node, str):
        try:
            return expand_env(node)
        except KeyError as exc:
            raise ConfigError(f"{source.name}: {key}: environment variable {exc.args[0]} is not set") from None
    return node


def _format_errors(source: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source.name}: {key}: {msg}")
    return "\n".join(lines)


def load_model_config(path: Path | str) -> ModelConfig:
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source.name}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source.name}: expected a mapping at the top level")
    raw = _expand_tree(raw, "", source)
    try:
        config = ModelConfig.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    if config.name != source.stem:
        raise ConfigError(f"{source.name}: name: must equal the file name stem {source.stem!r}")
    if not config.suite_path.is_file():
        raise ConfigError(f"{source.name}: dataset.expectation_suite: file not found: {config.suite_path}")
    return config


def load_model_configs(config_dir: Path | str | None = None) -> dict[str, ModelConfig]:
    """Every ``*.yaml`` under ``<config_dir>/models``; all files' errors are reported together."""
    models_dir = Path(config_dir or settings.config_dir()) / "models"
    configs: dict[str, ModelConfig] = {}
    errors: list[str] = []
    for path in sorted(models_dir.glob("*.yaml")):
        try:
            cfg = load_model_config(path)
        except ConfigError as exc:
            errors.append(str(exc))
        else:
            configs[cfg.name] = cfg
    if errors:
        raise ConfigError("\n".join(errors))
    return configs


@cache
def _cached_configs(config_dir: str, _mtimes: tuple[tuple[str, float], ...], _env: frozenset) -> dict[str, ModelConfig]:
    return load_model_configs(config_dir)


def model_configs(config_dir: Path | str | None = None) -> dict[str, ModelConfig]:
    """Like :func:`load_model_configs`, cached until a file or the environment (``${VAR}``) changes."""
    directory = Path(config_dir or settings.config_dir())
    mtimes = tuple((str(p), p.stat().st_mtime) for p in sorted((directory / "models").glob("*.yaml")))
    return _cached_configs(str(directory), mtimes, frozenset(os.environ.items()))


def get_model_config(name: str, config_dir: Path | str | None = None) -> ModelConfig:
    configs = model_configs(config_dir)
    if name not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise ConfigError(f"unknown model {name!r}; configured models: {known}")
    return configs[name]
