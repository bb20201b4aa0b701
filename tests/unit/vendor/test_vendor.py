"""What airloop relies on from third-party internals (:mod:`airloop.vendor`), run for real on tiny inputs.

Each test fails when an upgrade changes what a seam uses: Great Expectations' private ``_validate_pandas`` hook,
the fields of Evidently 0.7's ``snapshot.dict()``, MLflow's ``DatasetSource`` hooks, aiosmtpd's server check.
"""

from __future__ import annotations

import inspect
import json
import os
import smtplib
from datetime import date

import numpy as np
import pandas as pd
import pytest

from airloop.core.spec import BinaryTarget, ModelSpec, MonitoringSpec
from airloop.model.task import LABEL, PREDICTION, BinaryClassification

pytestmark = pytest.mark.unit


# -- Great Expectations -------------------------------------------------------------------------------------------


def _typed_spec() -> ModelSpec:
    """A contract with one column of each type family the override widens."""
    return ModelSpec.model_validate(
        {
            "name": "typed",
            "start_date": date(2013, 1, 1),
            "time_column": "at",
            "features": ["carrier"],
            "target": {"column": "delay", "threshold": 0},
            "contract": {
                "row_count": {"min": 1},
                "columns": [
                    {"name": "at", "type": "timestamp"},
                    {"name": "delay", "type": "integer"},
                    {"name": "carrier", "type": "string"},
                ],
            },
        }
    )


def _typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "at": pd.date_range("2013-01-01 05:00", periods=4, freq="h", tz="America/New_York"),
            "delay": pd.array([3, None, -2, 40], dtype="Int64"),
            "carrier": pd.array(["UA", "AA", None, "B6"], dtype="string[pyarrow]"),
        }
    )


def test_gx_type_list_hook_has_the_signature_the_override_takes():
    from great_expectations.expectations import ExpectColumnValuesToBeInTypeList

    from airloop.vendor.gx import gx

    hook = ExpectColumnValuesToBeInTypeList._validate_pandas
    assert list(inspect.signature(hook).parameters) == ["self", "actual_column_type", "expected_types_list"]
    family = gx().ExpectColumnValuesToBeInTypeFamily
    assert issubclass(family, ExpectColumnValuesToBeInTypeList)
    assert list(inspect.signature(family._validate_pandas).parameters) == list(
        inspect.signature(hook).parameters
    )


def test_gx_type_family_passes_parametrised_dtypes_and_refuses_a_float_integer(tmp_path):
    from airloop.ingest.validation import validate_frame

    spec, frame = _typed_spec(), _typed_frame()
    assert isinstance(frame["at"].dtype, pd.DatetimeTZDtype) and str(frame["carrier"].dtype) == "string"
    passed = validate_frame(frame, spec, batch_key="2013-01-01", results_dir=tmp_path)
    assert passed.passed, passed.failures
    assert passed.failures == []
    # What GX ran is the family expectation, and the full result is on disk.
    result = json.loads(open(passed.result_path).read())
    types = [r for r in result["results"] if r["expectation_config"]["type"].endswith("in_type_family")]
    assert sorted(r["expectation_config"]["kwargs"]["column"] for r in types) == ["at", "carrier", "delay"]
    assert {r["result"]["observed_value"] for r in types} == {
        "datetime64[ns, America/New_York]",
        "Int64",
        "string",
    }

    floats = frame.assign(delay=[3.0, np.nan, -2.0, 40.0])
    refused = validate_frame(floats, spec, batch_key="2013-01-02", results_dir=tmp_path)
    assert not refused.passed
    assert refused.failures == ["column 'delay': type float64, expected integer"]


def _comparable(result_path: str) -> list[dict]:
    """Each expectation's type, kwargs, success and result, from a written GX result."""
    result = json.loads(open(result_path).read())
    return [
        {
            "type": r["expectation_config"]["type"],
            "kwargs": r["expectation_config"]["kwargs"],
            "success": r["success"],
            "result": r["result"],
            "exception": r["exception_info"].get("raised_exception"),
        }
        for r in result["results"]
    ]


def test_gx_column_metrics_on_their_own_columns_give_what_gx_gives_on_the_whole_batch(tmp_path, monkeypatch):
    from great_expectations.execution_engine import PandasExecutionEngine

    from airloop.core.spec import load_spec
    from airloop.ingest.validation import validate_frame
    from airloop.local.demo.replay import day_frame
    from airloop.vendor.gx import gx

    gx()  # the wrapper in place
    narrowed = PandasExecutionEngine.get_domain_records
    gx_own = narrowed.__wrapped__
    assert list(inspect.signature(gx_own).parameters) == ["self", "domain_kwargs"]
    spec = load_spec(os.path.join(os.path.dirname(__file__), "../../../config/models/flights_delay.yaml"))
    frame = day_frame(date(2013, 1, 3)).head(400)
    # A failure of every kind the contract checks: a value out of range, one not allowed, nulls where none may
    # be, a key twice, a column of the wrong type.
    frame.loc[[3, 9], "distance"] = 0
    frame.loc[5, "carrier"] = "ZZ"
    frame.loc[[7, 8], "origin"] = None
    frame.loc[11, ["carrier", "flight", "time_hour"]] = frame.loc[
        10, ["carrier", "flight", "time_hour"]
    ].values
    frame["minute"] = frame["minute"].astype(float) + 0.5
    widths: list[tuple[str, int]] = []

    def spy(self, domain_kwargs):
        data = narrowed(self, domain_kwargs=domain_kwargs)
        widths.append(("column" in domain_kwargs or "column_list" in domain_kwargs, data.shape[1]))
        return data

    monkeypatch.setattr(PandasExecutionEngine, "get_domain_records", spy)
    ours = validate_frame(frame, spec, batch_key="2013-01-03", results_dir=tmp_path / "ours")
    monkeypatch.setattr(PandasExecutionEngine, "get_domain_records", gx_own)
    theirs = validate_frame(frame, spec, batch_key="2013-01-03", results_dir=tmp_path / "theirs")
    assert len(ours.failures) >= 5 and ours.failures == theirs.failures
    assert ours.statistics == theirs.statistics
    assert _comparable(ours.result_path) == _comparable(theirs.result_path)
    narrowed_widths = {width for is_column, width in widths if is_column}
    assert narrowed_widths <= {1, 3} and 1 in narrowed_widths, "a column's metrics saw its own column only"
    assert {width for is_column, width in widths if not is_column} == {frame.shape[1]}, (
        "tables see every column"
    )


# -- Evidently ----------------------------------------------------------------------------------------------------


def _frames(rows: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a current frame: ``temp`` moved far, ``origin`` and the prediction did not."""
    rng = np.random.default_rng(11)

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "temp": rng.normal(40 + shift, 5, rows),
                "origin": rng.choice(["EWR", "JFK", "LGA"], rows).astype(object),
                PREDICTION: rng.beta(2, 6, rows),
            }
        )

    return frame(0.0), frame(20.0)


@pytest.fixture(scope="module")
def drift_dict() -> dict:
    from airloop.monitor.reports import drift_snapshot

    reference, current = _frames()
    return drift_snapshot(
        reference, current, MonitoringSpec(), numeric=["temp"], categorical=["origin"]
    ).dict()


def test_evidently_drift_snapshot_holds_what_drift_figures_reads(drift_dict):
    drifts = [m for m in drift_dict["metrics"] if str(m["config"]["type"]).endswith(":ValueDrift")]
    assert sorted(m["config"]["column"] for m in drifts) == ["origin", PREDICTION, "temp"]
    for metric in drifts:
        assert {"column", "method", "threshold"} <= set(metric["config"]) and float(metric["value"]) >= 0
    verdicts = [
        t for t in drift_dict["tests"] if str(t["metric_config"]["params"]["type"]).endswith(":ValueDrift")
    ]
    assert {t["metric_config"]["metric_id"] for t in verdicts} == {m["id"] for m in drifts}
    assert {t["status"] for t in verdicts} <= {"SUCCESS", "FAIL"}


def test_evidently_drift_figures_give_method_score_threshold_and_verdict_per_column(drift_dict):
    from airloop.vendor.evidently import drift_figures

    figures = drift_figures(drift_dict, ["temp", "origin"], PREDICTION)
    temp, origin = figures.features
    # 300 reference rows: Evidently picks p-value tests, drifted below 0.05.
    assert (temp.column, temp.method, temp.threshold) == ("temp", "K-S p_value", 0.05)
    assert temp.drifted and temp.score < 0.05
    assert (origin.column, origin.method, origin.threshold) == ("origin", "chi-square p_value", 0.05)
    assert not origin.drifted and origin.score > 0.05
    assert figures.prediction is not None and figures.prediction.column == PREDICTION
    assert not figures.prediction.drifted


def test_evidently_data_quality_reads_a_summary_snapshot():
    from airloop.monitor.reports import summary_snapshot
    from airloop.vendor.evidently import data_quality

    reference, current = _frames(60)
    current = pd.concat([current, current.iloc[:2]], ignore_index=True)  # two duplicated rows
    current.loc[[5, 6, 7], "temp"] = np.nan
    snapshot = summary_snapshot(reference, current, numeric=["temp"], categorical=["origin"])
    quality = data_quality(snapshot.dict())
    assert quality["rows"] == 62 and quality["duplicated_rows"] == 2
    assert quality["missing_share"] == {"temp": pytest.approx(3 / 62), "origin": 0.0, PREDICTION: 0.0}
    # Evidently's dataset share: missing values per row (3 in 62 rows).
    assert quality["missing_values_share"] == pytest.approx(3 / 62)


def test_evidently_single_values_read_a_quality_snapshot():
    from airloop.monitor.reports import quality_snapshot
    from airloop.vendor.evidently import single_values

    task = BinaryClassification(BinaryTarget(column="arr_delay", threshold=15))
    rng = np.random.default_rng(5)
    labels = (rng.random(400) < 0.3).astype("int64")
    scores = np.clip(0.3 + 0.4 * (labels - 0.3) + rng.normal(0, 0.15, 400), 0.01, 0.99)
    frame = pd.DataFrame({LABEL: labels, PREDICTION: scores})
    snapshot = quality_snapshot(
        task, frame.iloc[:200].reset_index(drop=True), frame.iloc[200:].reset_index(drop=True)
    )
    figures = single_values(snapshot.dict(), task.quality_metric_names)
    assert set(figures) == set(task.quality_metric_names.values())
    assert all(np.isfinite(v) for v in figures.values())
    current = frame.iloc[200:]
    assert figures["roc_auc"] == pytest.approx(
        task.metric("roc_auc")(current[LABEL], current[PREDICTION]), abs=1e-6
    )
    assert figures["accuracy"] == pytest.approx(
        float(np.mean((current[PREDICTION] >= 0.5) == current[LABEL]))
    )


# -- MLflow -------------------------------------------------------------------------------------------------------


@pytest.fixture
def tracking(tmp_path):
    """A local SQLite tracking store (MLflow 3 refuses new file stores); MLflow's process-wide URI (and its
    variable) put back after."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(before)


def test_mlflow_dataset_source_hooks_exist():
    from mlflow.data.dataset_source import DatasetSource

    assert isinstance(inspect.getattr_static(DatasetSource, "_get_source_type"), staticmethod)
    assert callable(DatasetSource.from_dict) and callable(DatasetSource.to_json)


def test_mlflow_logs_the_warehouse_source_and_its_dict_round_trips(tracking, tmp_path):
    from mlflow import MlflowClient

    from airloop.vendor.mlflow import WAREHOUSE_SOURCE_TYPE, warehouse_source, warehouse_source_class

    source = warehouse_source(
        uri="x-airloop://flights_delay/batches?partitions=2013-01-01..2013-01-07",
        table="flights_delay_batches",
        partitions="2013-01-01..2013-01-07",
        ledger_digest="ab" * 32,
    )
    assert WAREHOUSE_SOURCE_TYPE == "airloop_warehouse"
    frame = pd.DataFrame({"temp": [1.0, 2.0], LABEL: [True, False]})
    dataset = tracking.data.from_pandas(frame, source=source, name="flights_delay 2013-01-01..2013-01-07")
    experiment = tracking.create_experiment("vendor", artifact_location=(tmp_path / "artifacts").as_uri())
    with tracking.start_run(experiment_id=experiment) as run:
        tracking.log_input(dataset, context="training")

    [logged] = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.source_type == "airloop_warehouse"
    assert json.loads(logged.dataset.source) == source.to_dict()
    assert {t.key: t.value for t in logged.tags}.get("mlflow.data.context") == "training"
    again = warehouse_source_class().from_dict(json.loads(logged.dataset.source))
    assert again.to_dict() == source.to_dict() and again._get_source_type() == "airloop_warehouse"
    assert warehouse_source_class().from_json(source.to_json()).to_dict() == source.to_dict()


# -- aiosmtpd -----------------------------------------------------------------------------------------------------


def test_aiosmtpd_free_port_controller_binds_a_real_port_serves_and_stops():
    from aiosmtpd.controller import Controller

    from airloop.vendor.aiosmtpd import FreePortController

    assert callable(getattr(Controller, "_trigger_server", None))
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            received.append(envelope.content)
            return "250 OK"

    controller = FreePortController(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    try:
        port = controller.port
        assert isinstance(port, int) and port > 0
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.noop()[0] == 250
            client.sendmail("a@example.com", ["b@example.com"], "Subject: hi\r\n\r\nbody\r\n")
    finally:
        controller.stop()
    assert len(received) == 1 and b"Subject: hi" in received[0]
    with pytest.raises(OSError), smtplib.SMTP("127.0.0.1", port, timeout=2):
        pass


def test_report_html_cannot_be_broken_out_of_by_the_data_it_shows():
    """Evidently writes its data into a script with plain json.dumps: a value holding </script> would end it."""
    import html
    import re

    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from airloop.vendor.evidently import safe_report_html

    bad = "</script><img src=x onerror=alert(1)>"
    reference = pd.DataFrame({"dest": ["BOS", "LAX"] * 50, "x": np.arange(100.0)})
    current = pd.DataFrame({"dest": ["BOS", bad] * 50, "x": np.arange(100.0)})
    definition = DataDefinition(numerical_columns=["x"], categorical_columns=["dest"])
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    unsafe = snapshot.get_html_str(as_iframe=False)
    assert bad in unsafe  # what Evidently itself writes: the reason for the seam
    frame = safe_report_html(snapshot)
    assert frame.startswith("<iframe class='evidently-ui-iframe'") and frame.endswith("</iframe>")
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', frame, re.DOTALL).group(1))
    assert bad not in page and "\\u003c/script>\\u003cimg src=x onerror=alert(1)>" in page
    # The page closes as many scripts as the same report on harmless data: the data's own were all escaped.
    harmless = current.replace(bad, "JFK")
    plain = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(harmless, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    assert (
        page.count("</script>")
        == plain.get_html_str(as_iframe=False).count("</script>")
        < unsafe.count("</script>")
    )
