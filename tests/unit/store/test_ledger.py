"""The batch ledger and the load beside it: a partition is replaced whole, with its ledger entry, or not at all."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from airloop.core.spec import load_spec
from airloop.local.demo.replay import day_frame
from airloop.store.bulk import LoadError
from airloop.store.db import open_warehouse, sync_table
from airloop.store.ledger import (
    PASSED,
    QUARANTINED,
    LedgerEntry,
    latest_passed_partition,
    ledger_entries,
    partition_row_count,
    passed_entries,
    record_batch,
    replace_partition,
    rows_of,
)
from airloop.store.schema import batches_table

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


@pytest.fixture
def engine(warehouse_url, spec):
    """The warehouse on SQLite and on PostgreSQL, in turn."""
    engine = open_warehouse(warehouse_url)
    sync_table(engine, batches_table(spec))
    return engine


def _entry(partition: str, checksum: str = "c" * 64, **changes) -> LedgerEntry:
    values = {
        "partition": partition,
        "status": PASSED,
        "checksum": checksum,
        "files": ["flights.parquet"],
        "validation_result_id": "r1",
        **changes,
    }
    return LedgerEntry(**values)


def test_replace_partition_never_duplicates(engine, spec):
    frame = day_frame(date(2013, 1, 2))
    for _ in range(2):
        rows = replace_partition(engine, spec, frame, _entry("2013-01-02"))
    assert rows == len(frame) == partition_row_count(engine, spec, "2013-01-02")
    entries = ledger_entries(engine, "flights_delay")
    assert [(e.partition, e.status, e.rows) for e in entries] == [("2013-01-02", "passed", len(frame))]
    assert entries[0].passed and entries[0].files == ["flights.parquet"] and entries[0].updated_at is not None
    with engine.connect() as conn:
        stored = pd.read_sql(sa.text("select * from flights_delay_batches limit 5"), conn)
    assert stored["arr_delay"].notna().any() and stored["carrier"].str.len().max() == 2


def test_the_load_records_what_it_wrote_whatever_the_entry_said(engine, spec):
    frame = day_frame(date(2013, 1, 2)).head(7)
    replace_partition(engine, spec, frame, _entry("2013-01-02", status="pending", rows=999))
    (entry,) = ledger_entries(engine, "flights_delay")
    assert (entry.status, entry.rows) == (PASSED, 7)


def test_failed_write_leaves_the_partition_as_it_was(engine, spec):
    frame = day_frame(date(2013, 1, 3))
    replace_partition(engine, spec, frame, _entry("2013-01-03"))
    broken = frame.drop(columns=["carrier"])
    with pytest.raises(KeyError):
        replace_partition(engine, spec, broken, _entry("2013-01-03", "d" * 64))
    assert partition_row_count(engine, spec, "2013-01-03") == len(frame)
    assert ledger_entries(engine, "flights_delay")[0].checksum == "c" * 64


@pytest.mark.parametrize("refused", ["text in a timestamp column", "a key twice"])
def test_a_write_that_fails_rolls_back_rows_and_entry(engine, spec, refused):
    frame = day_frame(date(2013, 1, 3)).head(10)
    replace_partition(engine, spec, frame, _entry("2013-01-03"))
    # Text where an instant belongs is refused before the load takes its lock; a key written twice by the
    # database, inside the transaction, after the old rows were deleted.
    if refused == "text in a timestamp column":
        broken = frame.assign(time_hour=frame["time_hour"].astype(object))
        broken.loc[4, "time_hour"] = "not a time"
        expected = pytest.raises(LoadError, match="column 'time_hour' cannot be stored as timestamp")
    else:  # refused by the database: the contract's key is unique within a partition
        broken = pd.concat([frame, frame.tail(1)], ignore_index=True)
        expected = pytest.raises(sa.exc.IntegrityError)
    with expected:
        replace_partition(engine, spec, broken, _entry("2013-01-03", "d" * 64))
    assert partition_row_count(engine, spec, "2013-01-03") == 10
    assert ledger_entries(engine, "flights_delay")[0].checksum == "c" * 64


def test_quarantine_record_replaces_ledger_row_but_not_data(engine, spec):
    for _ in range(2):
        record_batch(engine, "flights_delay", _entry("2013-01-04", status=QUARANTINED, reason="bad"))
    entries = ledger_entries(engine, "flights_delay")
    assert [(e.status, e.reason, e.passed) for e in entries] == [("quarantined", "bad", False)]
    assert partition_row_count(engine, spec, "2013-01-04") == 0


def test_passed_entries_skip_quarantined_partitions_oldest_first(engine, spec):
    frame = day_frame(date(2013, 1, 2)).head(5)
    replace_partition(engine, spec, frame, _entry("2013-01-05"))
    record_batch(engine, "flights_delay", _entry("2013-01-06", status=QUARANTINED, reason="bad"))
    replace_partition(engine, spec, frame.head(3), _entry("2013-01-02"))
    record_batch(engine, "other_model", _entry("2013-01-09"))
    assert [e.partition for e in ledger_entries(engine, "flights_delay")] == [
        "2013-01-02",
        "2013-01-05",
        "2013-01-06",
    ]
    passed = passed_entries(engine, "flights_delay")
    assert list(passed) == ["2013-01-02", "2013-01-05"]
    assert latest_passed_partition(engine, "flights_delay") == "2013-01-05"
    assert latest_passed_partition(engine, "nothing_yet") is None
    assert rows_of(passed, ["2013-01-02", "2013-01-05", "2013-01-06"]) == 8


def test_the_warehouse_refuses_a_repeated_key_within_a_partition(engine, spec):
    assert spec.contract.key == ["carrier", "flight", "time_hour"]
    frame = day_frame(date(2013, 1, 2)).head(20)
    replace_partition(engine, spec, frame, _entry("2013-01-02"))
    doubled = pd.concat([frame, frame.head(1)], ignore_index=True)
    with pytest.raises(sa.exc.IntegrityError):
        replace_partition(engine, spec, doubled, _entry("2013-01-02", "d" * 64))
    assert partition_row_count(engine, spec, "2013-01-02") == 20
    assert ledger_entries(engine, "flights_delay")[0].checksum == "c" * 64


def test_a_quarantine_never_replaces_a_delivery_that_passed(engine, spec):
    from airloop.store.ledger import record_quarantine

    bad = _entry("2013-01-04", "b" * 64, status=QUARANTINED, reason="bad")
    assert record_quarantine(engine, "flights_delay", bad) is None  # nothing before: recorded
    worse = _entry("2013-01-04", "w" * 64, status=QUARANTINED, reason="worse")
    assert record_quarantine(engine, "flights_delay", worse) is None  # an earlier rejection: replaced
    assert ledger_entries(engine, "flights_delay")[0].reason == "worse"
    frame = day_frame(date(2013, 1, 4)).head(6)
    replace_partition(engine, spec, frame, _entry("2013-01-04"))
    kept = record_quarantine(engine, "flights_delay", bad)
    assert kept is not None and (kept.status, kept.rows, kept.checksum) == (PASSED, 6, "c" * 64)
    (entry,) = ledger_entries(engine, "flights_delay")
    assert (entry.status, entry.rows) == (PASSED, 6) and partition_row_count(engine, spec, "2013-01-04") == 6
