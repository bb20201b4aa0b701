"""A delivery bigger than a chunk goes through the ingest task a chunk at a time, on SQLite and on PostgreSQL: it
lands as the same rows a whole read lands, is judged as a whole read judges it, and its load commits only if the
files still hold what was validated."""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from airloop.core.errors import SourceError
from airloop.ingest import ingest as ingest_module
from airloop.ingest.ingest import ingest_partition
from airloop.ingest.landing import parquet_chunks
from airloop.local.demo.replay import day_frame, write_partition
from airloop.model.context import ModelContext
from airloop.store.ledger import ledger_entries

pytestmark = pytest.mark.unit

DAY = date(2013, 1, 2)
PARTITION = DAY.isoformat()


def _context(settings, chunk_rows: int) -> ModelContext:
    return ModelContext.load("flights_delay", dataclasses.replace(settings, ingest_chunk_rows=chunk_rows))


def _stored(ctx: ModelContext) -> pd.DataFrame:
    with ctx.warehouse.connect() as conn:
        query = sa.text(f"select * from {ctx.spec.batches_table} order by _row")
        return pd.read_sql(query, conn).drop(columns=["_loaded_at"])


def test_a_day_in_chunks_lands_as_the_same_rows_as_the_whole_day(airloop_home, warehouse_url):
    settings = dataclasses.replace(airloop_home, warehouse_url=warehouse_url)
    whole, chunked = _context(settings, 100_000), _context(settings, 150)
    frame = day_frame(DAY)
    write_partition(frame, whole.landing, DAY)
    assert parquet_chunks(
        chunked.spec, ingest_module.find_delivery(chunked.spec, chunked.landing, PARTITION), 150
    )[0]

    verdict, loaded = ingest_partition(whole, PARTITION)
    assert verdict.passed and loaded.rows == len(frame)
    by_whole_read = _stored(whole)
    verdict, loaded = ingest_partition(chunked, PARTITION)
    assert verdict.passed and verdict.rows == loaded.rows == len(frame)
    pd.testing.assert_frame_equal(_stored(chunked), by_whole_read)
    assert [(e.partition, e.rows) for e in ledger_entries(chunked.warehouse, "flights_delay")] == [
        (PARTITION, len(frame))
    ]


def test_a_day_in_chunks_with_a_key_repeated_far_apart_is_refused_and_nothing_lands(
    airloop_home, warehouse_url
):
    ctx = _context(dataclasses.replace(airloop_home, warehouse_url=warehouse_url), 150)
    frame = day_frame(DAY)
    write_partition(pd.concat([frame, frame.iloc[[3]]], ignore_index=True), ctx.landing, DAY)
    verdict, loaded = ingest_partition(ctx, PARTITION)
    assert loaded is None and not verdict.passed
    assert verdict.failures[0].startswith("key (carrier, flight, time_hour): 2 row(s) share their key")
    assert not sa.inspect(ctx.warehouse).has_table(ctx.spec.batches_table)  # no load was begun


def test_files_changed_while_a_day_loads_in_chunks_roll_the_load_back(
    airloop_home, warehouse_url, monkeypatch
):
    ctx = _context(dataclasses.replace(airloop_home, warehouse_url=warehouse_url), 150)
    frame = day_frame(DAY)
    write_partition(frame, ctx.landing, DAY)
    first, loaded = ingest_partition(ctx, PARTITION)  # a first delivery, loaded
    assert loaded is not None
    write_partition(frame.assign(dep_delay=frame["dep_delay"] + 1), ctx.landing, DAY)  # a second one
    validated = ingest_module.validate_partition

    def validated_then_changed(context, partition):
        verdict, rows = validated(context, partition)
        write_partition(
            frame.assign(dep_delay=frame["dep_delay"] + 2), ctx.landing, DAY
        )  # a third, unvalidated
        return verdict, rows

    monkeypatch.setattr(ingest_module, "validate_partition", validated_then_changed)
    with pytest.raises(SourceError, match="changed after validation"):
        ingest_partition(ctx, PARTITION)
    # The first delivery's rows and ledger entry stay, whole.
    stored = _stored(ctx)
    assert len(stored) == len(frame)
    pd.testing.assert_series_equal(stored["dep_delay"], frame["dep_delay"].astype(float), check_names=False)
    assert ledger_entries(ctx.warehouse, "flights_delay")[0].checksum == first.checksum
