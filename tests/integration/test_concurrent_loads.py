"""Loads of one partition at once: the database lets one at a time through, so a partition is never doubled and
the ledger always says what the table holds (issue 12: four concurrent ingest runs of a day once left three copies).
"""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from airloop.core.spec import load_spec
from airloop.local.demo.replay import day_frame
from airloop.store.db import engine_for, open_warehouse, partition_transaction, sync_table
from airloop.store.ledger import PASSED, LedgerEntry, ledger_entries, partition_row_count, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-01-02"


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


def _entry(checksum: str) -> LedgerEntry:
    return LedgerEntry(partition=DAY, status=PASSED, checksum=checksum, files=["day.parquet"])


def _warehouse(url: str, spec) -> sa.Engine:
    engine = open_warehouse(url)
    sync_table(engine, batches_table(spec))
    return engine


def _await(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {condition.__doc__}")
        time.sleep(0.05)


def test_concurrent_loads_of_one_partition_leave_exactly_one_of_them(warehouse_url, spec):
    engine = _warehouse(warehouse_url, spec)
    whole = day_frame(date(2013, 1, 2))
    frames = [whole.head(len(whole) - 100 * i) for i in range(4)]  # four deliveries, four row counts
    start = threading.Barrier(len(frames))
    errors: list[BaseException] = []

    def load(index: int) -> None:
        try:
            start.wait(timeout=30)
            replace_partition(engine_for(warehouse_url), spec, frames[index], _entry(f"{index}" * 64))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    (entry,) = ledger_entries(engine, spec.name)
    winner = int(entry.checksum[0])
    stored = partition_row_count(engine, spec, DAY)
    assert stored == entry.rows == len(frames[winner])
    table = batches_table(spec)
    with engine.connect() as conn:
        checksums = conn.execute(sa.select(table.c._batch_checksum).distinct()).scalars().all()
        rows = conn.execute(sa.select(table.c._row).order_by(table.c._row)).scalars().all()
    assert checksums == [entry.checksum]
    assert rows == list(range(stored))


def test_a_second_load_waits_for_the_first_and_then_replaces_it_whole(postgres_url, spec):
    """On PostgreSQL the wait is visible: the second load queues on the partition's advisory lock."""
    engine = _warehouse(postgres_url, spec)
    frame = day_frame(date(2013, 1, 2))
    held, release, loaded = threading.Event(), threading.Event(), threading.Event()

    def first_load() -> None:  # a load in progress: the partition's lock held, its old rows deleted
        with partition_transaction(engine, spec.name, DAY) as conn:
            table = batches_table(spec)
            conn.execute(table.delete().where(table.c._partition == DAY))
            held.set()
            release.wait(timeout=60)

    def second_load() -> None:
        replace_partition(engine, spec, frame.head(300), _entry("2" * 64))
        loaded.set()

    replace_partition(engine, spec, frame, _entry("1" * 64))
    first = threading.Thread(target=first_load)
    first.start()
    _await(held.is_set)
    second = threading.Thread(target=second_load)
    second.start()

    def waiting_on_the_lock() -> bool:
        """the second load waits on the partition's advisory lock"""
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            return conn.execute(sa.text(query)).scalar_one() == 1

    _await(waiting_on_the_lock)
    assert not loaded.is_set()
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert loaded.is_set()
    (entry,) = ledger_entries(engine, spec.name)
    assert (entry.checksum, entry.rows) == ("2" * 64, 300) and partition_row_count(engine, spec, DAY) == 300


def test_loads_of_different_partitions_do_not_wait_for_each_other(postgres_url, spec):
    engine = _warehouse(postgres_url, spec)
    frame = day_frame(date(2013, 1, 3)).head(50)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with partition_transaction(engine, spec.name, DAY):
            held.set()
            release.wait(timeout=60)

    done = threading.Event()

    def load_another_day() -> None:
        other = LedgerEntry(partition="2013-01-03", status=PASSED, checksum="3" * 64, files=["day.parquet"])
        replace_partition(engine, spec, frame, other)
        done.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        _await(held.is_set)
        threading.Thread(target=load_another_day, daemon=True).start()
        _await(done.is_set, timeout=20)  # while 2013-01-02's lock is still held
        assert partition_row_count(engine, spec, "2013-01-03") == 50
    finally:
        release.set()
        holder.join(timeout=60)
