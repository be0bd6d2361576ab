"""Validate a pandas DataFrame against a Great Expectations 1.x suite kept as a JSON file.

The suite file uses GX's own suite format (``name``, ``expectations`` as a list of
``{"type", "kwargs"}``, optional ``meta``/``notes``). :func:`validate_dataframe` runs it
through an in-memory (ephemeral) GX context and returns a :class:`ValidationReport` with
a readable summary of what failed; with ``report_dir`` it also writes the JSON result and
GX-rendered Data Docs there, and nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.data_context import (
    AbstractDataContext,
    project_manager,
    set_context,
)
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.exceptions import (
    DataContextRequiredError,
    GreatExpectationsError,
)
from great_expectations.expectations.expectation_configuration import (
    ExpectationConfiguration,
)

log = logging.getLogger(__name__)

RESULT_FILE = "validation_result.json"
DOCS_DIR = "data_docs"
_DOCS_SITE = "local_site"
_SUITE_KEYS = frozenset({"name", "id", "expectations", "meta", "notes", "suite_parameters"})
_EXAMPLES = 5


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not pass: it found bad values, or it could not run at all."""

    expectation_type: str
    column: str | None
    detail: str
    errored: bool = False

    def line(self) -> str:
        return f"- {self.column or '(table)'}: {self.expectation_type} — {self.detail}"


@dataclass
class ValidationReport:
    """Outcome of one validation run; ``result`` is GX's full result as plain JSON data."""

    success: bool
    failures: list[FailedExpectation]
    statistics: dict[str, Any]
    result: dict[str, Any]
    json_path: Path | None = None
    docs_path: Path | None = None

    def summary(self) -> str:
        """Multi-line text: the verdict, then one line per failed expectation."""
        evaluated = self.statistics.get("evaluated_expectations", 0)
        if self.success:
            return f"Validation passed: {evaluated} of {evaluated} expectations"
        failed = self.statistics.get("unsuccessful_expectations", len(self.failures))
        lines = [f"Validation failed: {failed} of {evaluated} expectations"]
        lines += [failure.line() for failure in self.failures]
        return "\n".join(lines)


    def with_checks(self, failures: Sequence[FailedExpectation], evaluated: int) -> ValidationReport:
        """This report plus ``evaluated`` checks run outside GX, of which ``failures`` failed."""
        stats = dict(self.statistics)
        stats["evaluated_expectations"] = stats.get("evaluated_expectations", 0) + evaluated
        stats["unsuccessful_expectations"] = stats.get("unsuccessful_expectations", 0) + len(failures)
        stats["successful_expectations"] = stats["evaluated_expectations"] - stats["unsuccessful_expectations"]
        result = {**self.result, "project_checks": [
            {"type": f.expectation_type, "column": f.column, "detail": f.detail} for f in failures]}
        return ValidationReport(
            success=self.success and not failures, failures=[*self.failures, *failures], statistics=stats,
            result=result, json_path=self.json_path, docs_path=self.docs_path,
        )


class DataValidationError(ValueError):
    """A batch failed validation; ``report`` holds the details and ``str()`` is its summary."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


def load_suite(path: str | Path, *, extra_expectations: Sequence[dict[str, Any]] = ()) -> gx.ExpectationSuite:
    """Read a GX suite JSON file (plus ``extra_expectations``); every problem is a ``ValueError`` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read expectation suite file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"expectation suite file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"expectation suite file {path}: expected a JSON object, got {type(data).__name__}")  # noqa: TRY004 - a malformed file is a ValueError
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise ValueError(f"expectation suite file {path}: unknown keys {unknown}; allowed: {sorted(_SUITE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"expectation suite file {path}: 'name' must be a non-empty string")
    entries = data.get("expectations")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"expectation suite file {path}: 'expectations' must be a non-empty list")
    expectations = [_build_expectation(path, index, entry) for index, entry in enumerate(entries)]
    expectations += [_build_expectation(path, len(entries) + index, entry) for index, entry in enumerate(extra_expectations)]
    try:
        return gx.ExpectationSuite(
            name=name,
            expectations=expectations,
            meta=data.get("meta"),
            notes=data.get("notes"),
            suite_parameters=data.get("suite_parameters"),
        )
    except (GreatExpectationsError, TypeError, ValueError) as exc:
        raise ValueError(f"expectation suite file {path}: {exc}") from exc


def _build_expectation(path: Path, index: int, entry: Any) -> Any:
    """One suite entry as a GX Expectation (GX itself would only log and skip a bad one)."""
    where = f"expectation suite file {path}: expectations[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or not isinstance(entry.get("kwargs"), dict):
        raise ValueError(f"{where}: expected an object with a string 'type' and a 'kwargs' object")  # noqa: TRY004 - as above
    expectation_type = entry["type"]
    try:
        return ExpectationConfiguration(**entry).to_domain_obj()
    except GreatExpectationsError as exc:
        raise ValueError(f"{where}: unknown or unusable expectation type {expectation_type!r} ({exc})") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} ({expectation_type}): invalid configuration: {exc}") from exc


def validate_dataframe(
    df: pd.DataFrame,
    suite_path: str | Path,
    *,
    report_dir: Path | None = None,
    extra_expectations: Sequence[dict[str, Any]] = (),
    redact_columns: Collection[str] = (),
) -> ValidationReport:
    """Validate ``df`` against the suite at ``suite_path`` plus ``extra_expectations``.

    ``redact_columns``: columns holding personal data (:mod:`include.governance.screening`): the results of
    their expectations keep only counts (GX's example values are removed before the summary, the JSON
    result and the Data Docs are made).

    ``extra_expectations`` are suite entries (``{"type", "kwargs", "meta"}``) appended to the file's
    suite for this run, e.g. the checks derived from the model's declared columns; they appear in the
    result and the Data Docs like the file's own.

    With ``report_dir``, ``validation_result.json`` and the Data Docs site (``data_docs/``)
    are written there and their paths set on the report. Nothing is printed and nothing is
    written anywhere else. GX keeps a process-wide "current context"; it is restored
    afterwards, so this is safe to call between other GX work (but not from two threads at once).
    """
    suite = load_suite(suite_path, extra_expectations=extra_expectations)
    docs_dir = Path(report_dir) / DOCS_DIR if report_dir is not None else None
    with _ephemeral_context(docs_dir) as context:
        batch = (
            context.data_sources.add_pandas("pandas")
            .add_dataframe_asset("dataframe")
            .add_batch_definition_whole_dataframe("whole_dataframe")
        )
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=suite))
        gx_result = definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
        if _redact(gx_result, set(redact_columns)):  # the context stored it unredacted: the Data Docs read it there
            context.validation_results_store.set(key=_result_identifier(gx_result), value=gx_result)
        report = _build_report(gx_result, suite, set(df.columns))
        if report_dir is not None:
            report.json_path = _write_json(report.result, Path(report_dir) / RESULT_FILE)
            report.docs_path = _build_docs(context, gx_result)
    log.info(
        "Validated %d rows against suite %s: %s (%s of %s expectations failed)",
        len(df),
        suite.name,
        "passed" if report.success else "failed",
        report.statistics.get("unsuccessful_expectations"),
        report.statistics.get("evaluated_expectations"),
    )
    return report


_COUNT_KEYS = frozenset({"element_count", "missing_count", "missing_percent", "unexpected_count",
                         "unexpected_percent", "unexpected_percent_total", "unexpected_percent_nonmissing"})
REDACTED = "withheld: the column holds personal data"


def _redact(gx_result: ExpectationSuiteValidationResult, columns: set[str]) -> bool:
    """Keep only the counts of the results of expectations on ``columns`` (in place); whether any was changed."""
    changed = False
    for expectation_result in gx_result.results if columns else ():
        kwargs = expectation_result.expectation_config.kwargs or {}
        if any(kwargs.get(key) in columns for key in ("column", "column_A", "column_B")) and expectation_result.result:
            kept = {k: v for k, v in expectation_result.result.items() if k in _COUNT_KEYS}
            expectation_result.result = {**kept, "redacted": REDACTED}
            changed = True
    return changed


def _result_identifier(gx_result: ExpectationSuiteValidationResult) -> ValidationResultIdentifier:
    """The key under which the context keeps ``gx_result`` (and its Data Docs page)."""
    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=gx_result.suite_name),
        run_id=gx_result.meta["run_id"],
        batch_identifier=gx_result.batch_id,
    )


@contextmanager
def _ephemeral_context(docs_dir: Path | None) -> Iterator[AbstractDataContext]:
    """An in-memory GX context without analytics or progress bars; the previous current context is restored."""
    sites = {}
    if docs_dir is not None:
        sites[_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    try:
        previous = project_manager.get_current_project()
    except DataContextRequiredError:
        previous = None
    try:
        yield gx.get_context(mode="ephemeral", project_config=config)
    finally:
        set_context(previous)


def _build_report(
    gx_result: ExpectationSuiteValidationResult, suite: gx.ExpectationSuite, columns: set[str]
) -> ValidationReport:
    result = gx_result.to_json_dict()
    order = {expectation.id: index for index, expectation in enumerate(suite.expectations)}
    failed = [r for r in result["results"] if not r["success"]]
    failed.sort(key=lambda r: order.get(r["expectation_config"].get("id"), len(order)))
    return ValidationReport(
        success=bool(result["success"]),
        failures=[_failure(r, columns) for r in failed],
        statistics=dict(result.get("statistics") or {}),
        result=result,
    )


def _failure(expectation_result: dict[str, Any], columns: set[str]) -> FailedExpectation:
    """Describe one failed result; ``columns`` are the frame's, to name a missing one plainly."""
    config = expectation_result["expectation_config"]
    kwargs = config.get("kwargs") or {}
    targets = [kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs]
    column = ", ".join(map(str, targets)) or None
    error = _exception_message(expectation_result.get("exception_info") or {})
    if error is None:
        return FailedExpectation(config["type"], column, _describe(config["type"], expectation_result.get("result") or {}))
    missing = [target for target in targets if target not in columns]
    if missing:
        error = f"column {', '.join(map(repr, missing))} is missing"
    return FailedExpectation(config["type"], column, f"could not run: {error}", errored=True)


def _exception_message(info: dict[str, Any]) -> str | None:
    """The first exception message, from either shape GX uses (flat, or keyed by metric)."""
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "unknown error").strip()
            return message.removeprefix("Error: ")
    return None


def _describe(expectation_type: str, result: dict[str, Any]) -> str:
    """A short human description of what an expectation observed."""
    mismatched = (result.get("details") or {}).get("mismatched")
    if isinstance(mismatched, dict):
        parts = [f"{kind} columns {sorted(columns)}" for kind, columns in mismatched.items() if columns]
        return "; ".join(parts) or f"observed {result.get('observed_value')!r}"
    if "unexpected_count" in result:
        count, total = result["unexpected_count"], result.get("element_count")
        if expectation_type == "expect_column_values_to_not_be_null":
            return f"{count} of {total} values are null"
        if "redacted" in result:
            return f"{count} of {total} values unexpected (examples {result['redacted']})"
        examples = (result.get("partial_unexpected_list") or [])[:_EXAMPLES]
        return f"{count} of {total} values unexpected, e.g. {examples}"
    if "redacted" in result:
        return f"failed (details {result['redacted']})"
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    return "failed"


def _write_json(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return path


def _build_docs(context: AbstractDataContext, gx_result: ExpectationSuiteValidationResult) -> Path:
    """Render the Data Docs site and return the path of this run's validation page."""
    context.build_data_docs(site_names=[_DOCS_SITE])
    urls = context.get_docs_sites_urls(resource_identifier=_result_identifier(gx_result), site_name=_DOCS_SITE)
    return Path(unquote(urlparse(urls[0]["site_url"]).path))
