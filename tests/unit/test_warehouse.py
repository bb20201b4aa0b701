from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from airloop import warehouse
from airloop.demo.replay import day_frame
from airloop.spec import load_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


@pytest.fixture
def engine(tmp_path):
    engine = warehouse.engine_for(f"sqlite:///{tmp_path}/w.db")
    yield engine
    engine.dispose()


def _ledger(checksum: str = "c" * 64) -> dict:
    return {"checksum": checksum, "files": ["flights.parquet"], "validation_result_id": "r1", "reason": ""}


def test_replace_partition_never_duplicates(engine, spec):
    from datetime import date

    warehouse.ensure_tables(engine, spec)
    frame = day_frame(date(2013, 1, 2))
    for _ in range(2):
        rows = warehouse.replace_partition(engine, spec, "2013-01-02", frame, ledger_row=_ledger())
    assert rows == len(frame) == warehouse.partition_row_count(engine, spec, "2013-01-02")
    ledger = warehouse.ledger_rows(engine, "flights_delay")
    assert [(r["partition"], r["status"], r["rows"]) for r in ledger] == [("2013-01-02", "passed", len(frame))]
    with engine.connect() as conn:
        stored = pd.read_sql(sa.text("select * from flights_delay_batches limit 5"), conn)
    assert stored["arr_delay"].notna().any() and stored["carrier"].str.len().max() == 2


def test_failed_write_leaves_the_partition_as_it_was(engine, spec):
    from datetime import date

    warehouse.ensure_tables(engine, spec)
    frame = day_frame(date(2013, 1, 3))
    warehouse.replace_partition(engine, spec, "2013-01-03", frame, ledger_row=_ledger())
    broken = frame.drop(columns=["carrier"])
    with pytest.raises(KeyError):
        warehouse.replace_partition(engine, spec, "2013-01-03", broken, ledger_row=_ledger("d" * 64))
    assert warehouse.partition_row_count(engine, spec, "2013-01-03") == len(frame)
    assert warehouse.ledger_rows(engine, "flights_delay")[0]["checksum"] == "c" * 64


def test_quarantine_record_replaces_ledger_row_but_not_data(engine, spec):
    warehouse.ensure_tables(engine, spec)
    warehouse.record_batch(engine, "flights_delay", "2013-01-04", {**_ledger(), "status": "quarantined", "reason": "bad"})
    warehouse.record_batch(engine, "flights_delay", "2013-01-04", {**_ledger(), "status": "quarantined", "reason": "bad"})
    rows = warehouse.ledger_rows(engine, "flights_delay")
    assert [(r["status"], r["reason"]) for r in rows] == [("quarantined", "bad")]
    assert warehouse.partition_row_count(engine, spec, "2013-01-04") == 0


def test_events_with_a_key_are_written_once(engine):
    warehouse.ensure_tables(engine)
    assert warehouse.record_event(engine, "m", "alert_sent", {"a": 1}, dedup_key="k:email")
    assert not warehouse.record_event(engine, "m", "alert_sent", {"a": 1}, dedup_key="k:email")
    assert warehouse.record_event(engine, "m", "note", {"b": 2})
    assert warehouse.event_keys(engine, "k:") == {"k:email"}
    assert [e["kind"] for e in warehouse.events_for(engine, "m")] == ["alert_sent", "note"]


def test_ensure_tables_is_idempotent(engine, spec):
    warehouse.ensure_tables(engine, spec)
    warehouse.ensure_tables(engine, spec)
    assert {"airloop_batch_ledger", "airloop_events", "flights_delay_batches"} <= set(sa.inspect(engine).get_table_names())
