"""The links to what lifecycle tasks produced: MLflow UI URLs, the Data Docs page of a run, Triton's state."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from include import links, tracking
from include.links import MlflowUi


@pytest.mark.parametrize(("given", "base"), [
    ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
    ("https://mlflow.example.com/ml/", "https://mlflow.example.com/ml"),
    ("HTTPS://mlflow.example.com/#/experiments/1", "https://mlflow.example.com"),
    ("https://alice:s3cret@mlflow.example.com/?next=x", "https://mlflow.example.com"),
    ("  http://127.0.0.1:5000//  ", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/mlflow.db", None),
    ("postgresql://mlflow@db/mlflow", None),
    ("databricks", None),
    ("file:///tmp/mlruns", None),
    ("http://", None),
    ("", None),
    (None, None),
])
def test_ui_base_is_an_http_address_without_credentials(given, base):
    assert links.ui_base(given) == base


def test_mlflow_ui_urls_follow_the_ui_routes():
    ui = MlflowUi("https://mlflow.example.com/ml")
    assert ui.run("12", "abc123") == "https://mlflow.example.com/ml/#/experiments/12/runs/abc123"
    assert ui.model_version("credit_approval", 3) == "https://mlflow.example.com/ml/#/models/credit_approval/versions/3"
    assert (ui.artifact("12", "abc123", "reports/2026-11-02/1000/data_drift.html")
            == "https://mlflow.example.com/ml/#/experiments/12/runs/abc123/artifacts/reports/2026-11-02/1000/"
               "data_drift.html")


def test_names_and_paths_are_percent_encoded_segment_by_segment():
    ui = MlflowUi("http://m")
    assert ui.model_version("team/credit approval#1", "2") == "http://m/#/models/team%2Fcredit%20approval%231/versions/2"
    assert ui.artifact("1", "r", "/a b/c#d.html") == "http://m/#/experiments/1/runs/r/artifacts/a%20b/c%23d.html"


@pytest.mark.parametrize("path", ["", "/", "./", "../secrets.txt", "reports/../../x.html"])
def test_an_artifact_path_outside_the_run_is_refused(path):
    with pytest.raises(ValueError, match="not an artifact path"):
        MlflowUi("http://m").artifact("1", "r", path)


def test_the_url_formats_are_routes_of_the_installed_mlflow_ui():
    """MLflow's web UI (the built bundle shipped in the wheel) defines the routes the links are built for."""
    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    bundle = "".join(p.read_text(encoding="utf-8", errors="replace") for p in build.glob("main.*.js"))
    assert bundle, f"no MLflow UI bundle under {build}"
    assert '"/experiments/:experimentId/runs/:runUuid"' in bundle  # runPage
    assert '"/experiments/:experimentId/runs/:runUuid/*"' in bundle  # runPageWithTab: artifacts/<path> is a tab
    assert '["artifacts",n].join("/")' in bundle  # getRunPageRoute(experimentId, runUuid, artifactPath)
    assert '"/models/:modelName/versions/:version"' in bundle  # modelVersionPage
    assert "modelName:encodeURIComponent(e),version:t" in bundle  # the UI's own links encode the model name


def test_data_docs_page_prefers_the_latest_validation_page():
    paths = ["validation/validation_result.json", "validation/data_docs/index.html",
             "validation/data_docs/expectations/s.html",
             "validation/data_docs/validations/s/__none__/20261101T100000.000000Z/pandas-dataframe.html",
             "validation/data_docs/validations/s/__none__/20261102T100000.000000Z/pandas-dataframe.html"]
    assert links.data_docs_page(paths) == paths[-1]
    assert links.data_docs_page(paths[:3]) == "validation/data_docs/index.html"
    assert links.data_docs_page(["validation/validation_result.json"]) is None


def test_the_data_docs_root_is_where_validation_writes_them():
    from include.data import validation

    assert links.DATA_DOCS_ROOT == f"validation/{validation.DOCS_DIR}"


def test_find_data_docs_finds_the_page_a_real_validation_logged(client, tmp_path):
    from include.data.validation import validate_dataframe

    suite = tmp_path / "tiny.json"
    suite.write_text(json.dumps({"name": "tiny", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}]}))
    report_dir = tmp_path / "report"
    report = validate_dataframe(pd.DataFrame({"a": [1, None, 3]}), suite, report_dir=report_dir)
    assert not report.success
    run_id = tracking.upsert_run(client, "links-tests", {"test.run": "docs"}, "docs")
    empty = tracking.upsert_run(client, "links-tests", {"test.run": "no-docs"}, "no-docs")
    client.log_artifacts(run_id, str(report_dir), artifact_path="validation")  # as include.data.checks.validate does

    page = links.find_data_docs(client, run_id)
    expected = report.docs_path.relative_to(report_dir).as_posix()
    assert page == f"validation/{expected}"
    assert page.startswith("validation/data_docs/validations/tiny/") and page.endswith(".html")
    assert links.find_data_docs(client, empty) is None


def test_run_and_artifact_urls_name_the_runs_experiment(client):
    run_id = tracking.upsert_run(client, "links-tests", {"test.run": "url"}, "url")
    experiment = client.get_experiment_by_name("links-tests").experiment_id
    ui = MlflowUi("http://mlflow:5000")
    assert links.run_url(ui, client, run_id) == f"http://mlflow:5000/#/experiments/{experiment}/runs/{run_id}"
    assert (links.artifact_url(ui, client, run_id, "reports/r.html")
            == f"http://mlflow:5000/#/experiments/{experiment}/runs/{run_id}/artifacts/reports/r.html")
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        links.run_url(ui, client, "0" * 32)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"


INDEX = [
    {"name": "credit_approval", "version": "1", "state": "READY"},
    {"name": "credit_approval", "version": "10", "state": "UNAVAILABLE", "reason": "unloaded"},
    {"name": "credit_approval", "version": "2", "state": "UNAVAILABLE",
     "reason": "failed to load: ModuleNotFoundError: onnxruntime"},
    {"name": "other_model", "version": "2", "state": "READY"},
    {"name": "credit_approval"},  # a model Triton lists without a version
]


def test_triton_status_of_a_ready_version():
    status = links.triton_model_status(INDEX, "credit_approval", 1)
    assert status.ready and status.version == "1"
    assert list(status.versions) == ["1", "2", "10"]  # by version number
    assert status.versions["10"] == "UNAVAILABLE" and "other_model" not in status.detail
    assert status.reasons == {"2": "failed to load: ModuleNotFoundError: onnxruntime", "10": "unloaded"}
    assert status.detail == "version 1 of credit_approval is READY on Triton"


def test_triton_status_says_why_a_version_is_not_ready():
    status = links.triton_model_status(INDEX, "credit_approval", "2")
    assert not status.ready
    assert status.detail == ("version 2 of credit_approval is UNAVAILABLE on Triton: "
                             "failed to load: ModuleNotFoundError: onnxruntime")


def test_triton_status_of_a_version_triton_does_not_know():
    status = links.triton_model_status(INDEX, "credit_approval", "3")
    assert not status.ready
    assert status.detail == ("Triton's repository has no version 3 of credit_approval "
                             "(versions it knows: v1 READY, v2 UNAVAILABLE, v10 UNAVAILABLE)")
    assert links.triton_model_status([], "m", "1").detail.endswith("(versions it knows: none)")
