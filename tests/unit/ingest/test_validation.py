"""The data contract as a Great Expectations suite: failure paths first, then a real day of flights."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airloop.core.spec import ModelSpec, load_spec
from airloop.ingest.validation import (
    ValidationOutcome,
    build_suite,
    outcome_from_failures,
    own_failures,
    validate_frame,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _spec(allow_extra_columns: bool = False) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "toy",
            "start_date": "2013-01-01",
            "time_column": "time_hour",
            "features": ["carrier", "distance"],
            "target": {"column": "arr_delay", "threshold": 15},
            "contract": {
                "row_count": {"min": 3, "max": 100},
                "allow_extra_columns": allow_extra_columns,
                "columns": [
                    {"name": "time_hour", "type": "timestamp", "nullable": False},
                    {"name": "carrier", "type": "string", "nullable": False, "allowed": ["AA", "UA", "DL"]},
                    {"name": "distance", "type": "integer", "nullable": False, "min": 1, "max": 6000},
                    {"name": "arr_delay", "type": "number", "min": -120, "max": 1800, "mostly": 0.8},
                    {"name": "cancelled", "type": "boolean"},
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return _spec()


def _frame(rows: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_hour": pd.date_range("2013-01-05", periods=rows, freq="h", tz="UTC"),
            "carrier": (["AA", "UA", "DL"] * rows)[:rows],
            "distance": np.arange(1, rows + 1) * 100,
            "arr_delay": np.linspace(-10.0, 100.0, rows),
            "cancelled": [False] * rows,
        }
    )


def _validate(frame: pd.DataFrame, spec: ModelSpec, tmp_path: Path, **kwargs) -> ValidationOutcome:
    return validate_frame(frame, spec, batch_key="2013-01-05", results_dir=tmp_path / "results", **kwargs)


def _text_with_a_bad_cell(values: pd.Series) -> pd.Series:
    # What a CSV with one bad cell in a number column gives: the whole column is read as strings.
    text = values.astype(str)
    text.iloc[2] = "abc"
    return text


def _one_int_among_strings(values: pd.Series) -> pd.Series:
    mixed = values.astype(object)
    mixed.iloc[4] = 7
    return mixed


@pytest.mark.parametrize(
    ("column", "convert", "expected"),
    [
        ("arr_delay", _text_with_a_bad_cell, "type object, expected number, e.g. ['-10.0', "),
        ("distance", lambda s: s.astype(float), "type float64, expected integer"),
        ("time_hour", lambda s: s.astype(str), "type object, expected timestamp"),
        ("carrier", lambda s: pd.Series(1, index=s.index), "type int64, expected string"),
        ("carrier", _one_int_among_strings, "type object, expected string (1 value(s) not str, e.g. [7])"),
        (
            "cancelled",
            lambda s: pd.Series([True, None] * 5, dtype=object),
            "type object, expected boolean, e.g. [True]",
        ),
    ],
    ids=[
        "text-in-number",
        "float-in-integer",
        "text-in-timestamp",
        "int-in-string",
        "mixed-string",
        "object-bools",
    ],
)
def test_wrong_type_fails_naming_the_column(spec, tmp_path, column, convert, expected):
    frame = _frame()
    frame[column] = convert(frame[column])
    outcome = _validate(frame, spec, tmp_path)
    assert not outcome.passed
    assert outcome.failures[0].startswith(f"column '{column}': {expected}"), outcome.failures
    # A range check on values of the wrong type says nothing more: it is not reported.
    assert not any("outside" in f for f in outcome.failures if f.startswith(f"column '{column}'"))


def test_missing_columns_fail_once_without_crashing(spec, tmp_path):
    outcome = _validate(_frame().drop(columns=["arr_delay", "carrier"]), spec, tmp_path)
    assert not outcome.passed
    assert outcome.failures == ["missing column(s): arr_delay, carrier"]
    assert outcome.reason == "missing column(s): arr_delay, carrier"


def test_empty_frame_fails_on_row_count(spec, tmp_path):
    outcome = _validate(_frame().iloc[0:0], spec, tmp_path)
    assert not outcome.passed
    assert outcome.failures == ["row count 0 outside [3, 100]"]


def test_value_out_of_range(spec, tmp_path):
    frame = _frame()
    frame.loc[3, "distance"] = 9999
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.failures == ["column 'distance': 1 value(s) outside [1, 6000], e.g. [9999]"]


def test_value_not_in_allowed_set(spec, tmp_path):
    frame = _frame()
    frame.loc[[1, 4, 5], "carrier"] = "ZZ"
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.failures == ["column 'carrier': 3 value(s) not in allowed set, e.g. ['ZZ']"]


def test_null_in_non_nullable_column(spec, tmp_path):
    frame = _frame()
    frame.loc[1, "carrier"] = None
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.failures == ["column 'carrier': 1 null value(s)"]


@pytest.mark.parametrize(
    ("bad_rows", "null_rows", "passes"),
    [([1, 2], [], True), ([1, 2, 3], [], False), ([1, 2], [0], False)],
    ids=["20%-of-10-allowed", "30%-of-10-too-many", "2-of-9-non-null-too-many"],
)
def test_mostly_tolerates_a_share_of_bad_values(spec, tmp_path, bad_rows, null_rows, passes):
    frame = _frame()  # arr_delay has mostly: 0.8, so up to 20% of the non-null values may be out of range
    frame.loc[bad_rows, "arr_delay"] = 5000.0
    frame.loc[null_rows, "arr_delay"] = np.nan
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.passed is passes, outcome.reason
    if bad_rows == [1, 2, 3]:
        assert outcome.failures == [
            "column 'arr_delay': 3 value(s) outside [-120, 1800] "
            "(30.00% of non-null values; at most 20.00% allowed), e.g. [5000.0]"
        ]


def test_extra_column_fails_unless_allowed(spec, tmp_path):
    frame = _frame().assign(runway="4L")
    assert _validate(frame, spec, tmp_path).failures == ["unexpected column(s): runway"]
    assert _validate(frame, _spec(allow_extra_columns=True), tmp_path).passed


def test_several_failures_are_listed_in_contract_order(spec, tmp_path):
    frame = _frame().assign(extra=1)
    frame.loc[1, "carrier"] = "ZZ"
    frame.loc[2, "distance"] = 0
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.failures == [
        "unexpected column(s): extra",
        "column 'carrier': 1 value(s) not in allowed set, e.g. ['ZZ']",
        "column 'distance': 1 value(s) outside [1, 6000], e.g. [0]",
    ]
    assert outcome.statistics["unsuccessful_expectations"] == 3


def test_nullable_and_parametrised_dtypes_are_accepted(spec, tmp_path):
    frame = _frame()
    frame["distance"] = frame["distance"].astype("Int64")
    frame["carrier"] = frame["carrier"].astype("string")
    frame["time_hour"] = (
        frame["time_hour"].dt.tz_convert("America/New_York").astype("datetime64[us, America/New_York]")
    )
    frame["arr_delay"] = frame["arr_delay"].astype("Float64")
    frame["cancelled"] = frame["cancelled"].astype("boolean")
    assert _validate(frame, spec, tmp_path).passed
    # Naive times are not instants: every reading path localizes them in the contract's zone, so one that reaches
    # validation is a time that zone could not place (a daylight-saving gap or overlap).
    frame["time_hour"] = frame["time_hour"].dt.tz_localize(None)
    outcome = _validate(frame, spec, tmp_path)
    assert outcome.failures == [
        "column 'time_hour': type datetime64[us], expected timestamp: times without a zone that do not exist or "
        "are ambiguous in the contract's timezone (a daylight-saving change)"
    ]


def test_suite_is_derived_from_the_contract(spec):
    suite = build_suite(spec)
    kinds = [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]
    assert suite.name == "toy"
    assert kinds[:2] == [
        ("expect_table_columns_to_match_set", None),
        ("expect_table_row_count_to_be_between", None),
    ]
    assert ("expect_column_values_to_not_be_null", "carrier") in kinds
    assert ("expect_column_values_to_not_be_null", "arr_delay") not in kinds
    assert ("expect_column_values_to_be_in_set", "carrier") in kinds
    assert ("expect_column_values_to_be_between", "distance") in kinds
    assert sum(kind == "expect_column_values_to_be_in_type_family" for kind, _ in kinds) == 5


def test_outcome_from_failures_has_the_same_shape(spec):
    outcome = outcome_from_failures(spec, "2013-01-05", ["file flights.txt: format .txt not accepted"])
    assert not outcome.passed
    assert outcome.result_id.startswith("toy-2013-01-05-")
    assert outcome.result_path is None
    assert outcome.statistics["evaluated_expectations"] == 0
    data = json.loads(json.dumps(outcome.to_dict()))
    assert data["reason"] == "file flights.txt: format .txt not accepted"
    assert ValidationOutcome.from_dict(data) == outcome
    with pytest.raises(ValueError, match="at least one failure"):
        outcome_from_failures(spec, "2013-01-05", [])


def test_importing_the_module_imports_neither_gx_nor_pandas():
    code = "import sys, airloop.ingest.validation; print(sorted({'great_expectations', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def real_day() -> pd.DataFrame:
    """A real 2013 day, as the demo lands it (flights joined with the weather at their origin)."""
    from airloop.local.demo.replay import day_frame

    return day_frame(date(2013, 1, 5))


def test_a_real_day_passes_and_its_result_is_written(real_day, tmp_path):
    spec = load_spec(ROOT / "config" / "models" / "flights_delay.yaml")
    outcome = validate_frame(real_day, spec, batch_key="2013-01-05", results_dir=tmp_path)
    assert outcome.passed, outcome.reason
    assert outcome.failures == [] and outcome.reason == ""
    stats = outcome.statistics
    assert stats["evaluated_expectations"] == stats["successful_expectations"] > 28
    path = Path(outcome.result_path)
    assert path == tmp_path / "flights_delay" / "2013-01-05" / f"{outcome.result_id}.json"
    result = json.loads(path.read_text())
    assert result["success"] is True
    assert result["meta"]["airloop"] == {
        "result_id": outcome.result_id,
        "model": "flights_delay",
        "batch_key": "2013-01-05",
    }
    assert len(json.dumps(outcome.to_dict())) < 1000  # small enough for XCom


def test_data_docs_accumulate_pages_across_validations(spec, tmp_path):
    # Each call builds a fresh ephemeral context, as a new Airflow task process would: nothing carries over
    # in memory, so what the second call keeps of the first is what another process would keep.
    docs = tmp_path / "docs"
    first = _validate(_frame(), spec, tmp_path, data_docs_dir=docs)
    bad = _frame()
    bad.loc[1, "carrier"] = "ZZ"
    second = validate_frame(
        bad, spec, batch_key="2013-01-06", results_dir=tmp_path / "results", data_docs_dir=docs
    )
    assert first.passed and not second.passed

    index = (docs / "index.html").read_text()
    pages = sorted(p.relative_to(docs).as_posix() for p in (docs / "validations").rglob("*.html"))
    assert [p.split("/")[2] for p in pages] == ["2013-01-05", "2013-01-06"]
    for page in pages:
        assert page in index
    assert (docs / "expectations" / "toy.html").is_file()


def test_data_docs_publishing_is_left_to_the_process_holding_the_lock(spec, tmp_path):
    # Another process is publishing: this validation queues its result and returns without waiting; the next
    # publish renders everything queued, so no page is lost.
    import fcntl

    docs = tmp_path / "docs"
    lock = docs / ".gx" / "publish.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        first = _validate(_frame(), spec, tmp_path, data_docs_dir=docs)
        assert [p.name for p in (docs / ".gx" / "queue").glob("*.json")] == [f"{first.result_id}.json"]
        assert not (docs / "index.html").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    validate_frame(
        _frame(), spec, batch_key="2013-01-06", results_dir=tmp_path / "results", data_docs_dir=docs
    )
    assert not list((docs / ".gx" / "queue").glob("*.json"))
    pages = sorted(p.relative_to(docs).as_posix() for p in (docs / "validations").rglob("*.html"))
    assert [p.split("/")[2] for p in pages] == ["2013-01-05", "2013-01-06"]
    index = (docs / "index.html").read_text()
    assert all(page in index for page in pages)


def _with_null_share(max_null_share: float) -> ModelSpec:
    raw = _spec().model_dump()
    raw["contract"]["columns"][3]["max_null_share"] = max_null_share
    return ModelSpec.model_validate(raw)


@pytest.mark.parametrize(
    ("null_rows", "passes"),
    [([], True), ([0, 1, 2], True), ([0, 1, 2, 3], False), (list(range(10)), False)],
    ids=["none", "30%-of-30%", "40%-too-many", "all-null-target"],
)
def test_max_null_share_bounds_the_nulls_of_a_nullable_column(tmp_path, null_rows, passes):
    frame = _frame()
    frame.loc[null_rows, "arr_delay"] = np.nan
    outcome = _validate(frame, _with_null_share(0.3), tmp_path)
    assert outcome.passed is passes, outcome.reason
    if not passes:
        share = 100 * len(null_rows) / len(frame)
        assert (
            f"column 'arr_delay': {len(null_rows)} null value(s) ({share:.2f}% of rows; at most 30.00% allowed)"
            in outcome.failures
        )


def test_max_null_share_needs_a_nullable_column():
    raw = _spec().model_dump()
    raw["contract"]["columns"][0]["max_null_share"] = 0.1  # time_hour: nullable false
    with pytest.raises(ValueError, match="max_null_share applies to a nullable column"):
        ModelSpec.model_validate(raw)


def test_a_nul_character_fails_naming_the_column_and_the_rows(spec, tmp_path):
    frame = _frame()
    frame.loc[[2, 5], "carrier"] = "A\x00A"
    outcome = _validate(frame, _spec(), tmp_path)
    assert not outcome.passed
    assert (
        "column 'carrier': 2 value(s) hold a NUL character, which the warehouse cannot store (_row 2, 5)"
        in outcome.failures
    )


def _with_key(key: list[str]) -> ModelSpec:
    raw = _spec().model_dump()
    raw["contract"]["key"] = key
    return ModelSpec.model_validate(raw)


def test_rows_repeating_the_key_fail_naming_the_key_and_examples(tmp_path):
    frame = pd.concat([_frame(), _frame().iloc[[2]]], ignore_index=True)
    outcome = _validate(frame, _with_key(["carrier", "time_hour"]), tmp_path)
    assert not outcome.passed
    (failure,) = outcome.failures
    assert failure.startswith("key (carrier, time_hour): 2 row(s) share their key with another row, e.g. [")
    assert "'carrier': 'DL'" in failure


def test_a_missing_key_column_is_reported_once_as_missing(tmp_path):
    outcome = _validate(_frame().drop(columns=["carrier"]), _with_key(["carrier", "time_hour"]), tmp_path)
    assert outcome.failures == ["missing column(s): carrier"]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (["carrier", "flight"], "key column(s) ['flight'] are not declared"),
        (["carrier", "arr_delay"], "key column(s) ['arr_delay'] must be nullable: false"),
        (["carrier", "carrier"], "names a column twice"),
    ],
)
def test_a_key_must_name_declared_non_nullable_columns_once(key, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _with_key(key)


def test_data_docs_pages_escape_names_and_values_from_the_data(spec, tmp_path):
    frame = _frame()
    frame["<script>alert(1)</script>"] = 1
    frame.loc[3, "carrier"] = "<img src=x onerror=alert(2)>"
    outcome = _validate(frame, spec, tmp_path, data_docs_dir=tmp_path / "docs")
    assert "unexpected column(s): <script>alert(1)</script>" in outcome.failures  # the record keeps the text
    pages = [p.read_text() for p in (tmp_path / "docs").rglob("*.html")]
    page = next(p for p in pages if "alert(1)" in p)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert not any("<script>alert(1)" in p or "<img src=x onerror" in p for p in pages)


def test_rows_outside_the_partitions_interval_fail_counted_with_examples(spec, tmp_path):
    from datetime import UTC, datetime

    interval = (datetime(2013, 1, 5, tzinfo=UTC), datetime(2013, 1, 6, tzinfo=UTC))
    frame = _frame()  # hourly from 2013-01-05 00:00 UTC: all inside
    assert _validate(frame, spec, tmp_path, interval=interval).passed
    frame.loc[[2, 7], "time_hour"] = pd.Timestamp("2013-01-06T00:00:00Z")  # the end is outside
    outcome = _validate(frame, spec, tmp_path, interval=interval)
    assert outcome.failures == [
        "column 'time_hour': 2 row(s) outside the partition's interval [2013-01-05T00:00:00+00:00, "
        "2013-01-06T00:00:00+00:00), e.g. ['2013-01-06T00:00:00+00:00']"
    ]
    raw = spec.model_dump()
    raw["contract"]["partition_tolerance_hours"] = 1
    assert _validate(frame, ModelSpec.model_validate(raw), tmp_path, interval=interval).passed


def test_a_failure_of_airloops_own_checks_is_in_the_kept_result_too(spec, tmp_path):
    frame = _frame()
    frame.loc[2, "carrier"] = "A\x00A"
    outcome = _validate(frame, _spec(), tmp_path)
    kept = json.loads(Path(outcome.result_path).read_text())
    assert kept["success"] is False
    assert any("NUL character" in f for f in kept["meta"]["airloop"]["failures"])


def test_values_of_a_timestamp_column_that_are_no_time_are_named_with_their_rows():
    spec = load_spec(Path(__file__).resolve().parents[3] / "config" / "models" / "flights_delay.yaml")
    frame = pd.DataFrame(
        {"time_hour": ["2013-01-02T05:00:00Z", "soon", None, "2013-01-02 07:00", "13/45/2013"]}
    )
    assert own_failures(frame, spec) == [
        "column 'time_hour': 2 value(s) not a time, e.g. ['soon', '13/45/2013'] (_row 1, 4)"
    ]
    parsed = frame.assign(time_hour=pd.to_datetime(["2013-01-02T05:00:00Z"] * 5, utc=True))
    assert own_failures(parsed, spec) == []


def test_text_columns_are_checked_in_bulk_with_the_same_results_and_the_caller_s_frame_unchanged(
    spec, tmp_path, monkeypatch
):
    import airloop.ingest.validation as validation

    frame = _frame(12)
    frame.loc[1, "carrier"] = "ZZ"
    frame.loc[4, "carrier"] = None
    frame.loc[6, "carrier"] = "A\x00A"
    bulk = validation.arrow_strings(frame, spec)
    assert str(bulk["carrier"].dtype) == "string" and frame["carrier"].dtype == object
    assert bulk["carrier"].isna().tolist() == frame["carrier"].isna().tolist()
    mixed = frame.assign(carrier=_one_int_among_strings(frame["carrier"]))
    assert validation.arrow_strings(mixed, spec)["carrier"].dtype == object, (
        "not all text: left for the type check"
    )

    in_bulk = _validate(frame, spec, tmp_path / "bulk")
    monkeypatch.setattr(validation, "arrow_strings", lambda df, spec: df)
    by_value = _validate(frame, spec, tmp_path / "by-value")
    assert in_bulk.failures == by_value.failures and len(in_bulk.failures) == 3, in_bulk.failures
    assert in_bulk.statistics == by_value.statistics
    results = [json.loads(Path(o.result_path).read_text())["results"] for o in (in_bulk, by_value)]
    for ours, theirs in zip(*results, strict=True):
        assert ours["success"] == theirs["success"]
        observed = ours["result"].get("observed_value")
        if observed in ("string", "object"):  # the type check names the dtype it saw
            continue
        assert ours["result"] == theirs["result"], ours["expectation_config"]["type"]


def test_text_arrow_cannot_hold_is_checked_as_it_is(spec):
    from airloop.ingest.validation import arrow_strings

    frame = _frame(3)
    frame.loc[1, "carrier"] = "A\ud800"  # a lone surrogate: text to Python, not to Arrow
    assert arrow_strings(frame, spec)["carrier"].dtype == object
