"""The batch ledger: one row per model and partition, what became of its latest delivery; and the load that
writes a validated partition with its ledger row in one transaction.

A re-run or a backfill replaces a partition (its rows deleted and inserted in the same transaction as the ledger
row), so nothing is ever duplicated; the batch table's key (partition, row) makes a doubled row impossible.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airloop.core.spec import ColumnType, ModelSpec
from airloop.store.bulk import rows_to_write, write_rows
from airloop.store.db import partition_transaction
from airloop.store.schema import (
    BATCH_CHECKSUM,
    LOADED_AT,
    PARTITION,
    ROW,
    batches_table,
    contract_types,
    ledger,
)

if TYPE_CHECKING:
    import pandas as pd

PASSED, QUARANTINED = "passed", "quarantined"


@dataclass(frozen=True)
class LedgerEntry:
    """A partition's latest delivery: its status, rows, checksum, validation result and where it went."""

    partition: str
    status: str
    checksum: str
    rows: int | None = None
    validation_result_id: str | None = None
    reason: str | None = None
    files: list[str] = field(default_factory=list)
    quarantine_path: str | None = None
    airflow_run_id: str | None = None
    updated_at: datetime | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def ledger_entries(engine: Engine, model: str) -> list[LedgerEntry]:
    """A model's partitions, oldest first."""
    query = sa.select(ledger).where(ledger.c.model == model).order_by(ledger.c.partition)
    with engine.connect() as conn:
        return [_entry(row._mapping) for row in conn.execute(query)]


def settled_partitions(engine: Engine, model: str, partitions: Sequence[str]) -> set[str]:
    """Which of ``partitions`` the model's ledger holds (passed or quarantined: its ingestion has settled them)."""
    if not partitions:
        return set()
    query = sa.select(ledger.c.partition).where(ledger.c.model == model, ledger.c.partition.in_(partitions))
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def passed_entries(engine: Engine, model: str) -> dict[str, LedgerEntry]:
    """The validated partitions of a model, by partition, oldest first."""
    return {e.partition: e for e in ledger_entries(engine, model) if e.passed}


def latest_passed_partition(engine: Engine, model: str) -> str | None:
    """The newest validated partition of a model (its key; ``None``: none yet)."""
    query = sa.select(sa.func.max(ledger.c.partition)).where(
        ledger.c.model == model, ledger.c.status == PASSED
    )
    with engine.connect() as conn:
        latest = conn.execute(query).scalar()
    return str(latest) if latest else None


def record_batch(engine: Engine, model: str, entry: LedgerEntry) -> None:
    """Record a delivery in the ledger without touching the batch table (e.g. a quarantined one), under the
    partition's lock (see :func:`airloop.store.db.partition_transaction`)."""
    with partition_transaction(engine, model, entry.partition) as conn:
        _upsert(conn, model, entry)


def replace_partition(
    engine: Engine, spec: ModelSpec, rows: pd.DataFrame | Iterator[pd.DataFrame], entry: LedgerEntry
) -> int:
    """Replace a partition's rows with ``rows`` and record ``entry``, in one transaction holding the partition's
    lock (:func:`airloop.store.db.partition_transaction`): two loads of one partition never interleave, the second
    replaces the first whole. ``rows``: a frame (each row's ``_row`` its position in it), typed before the lock is
    taken; or chunks of one (each row's ``_row`` its position in all of them), each typed and written in turn
    inside the transaction, so a partition larger than memory loads a chunk at a time (a chunk that cannot be
    stored, or an error of the iterator, rolls the whole load back). Returns the rows written."""
    table = batches_table(spec)
    constants: dict[str, tuple[ColumnType, Any]] = {
        PARTITION: ("string", entry.partition),
        BATCH_CHECKSUM: ("string", entry.checksum),
        LOADED_AT: ("timestamp", datetime.now(UTC)),
    }
    types = contract_types(spec)
    ready = None if isinstance(rows, Iterator) else rows_to_write(rows, types, constants, row_number=ROW)
    with partition_transaction(engine, spec.name, entry.partition) as conn:
        conn.execute(table.delete().where(table.c[PARTITION] == entry.partition))
        if ready is not None:
            written = write_rows(conn, table, ready)
        else:
            written = 0
            for chunk in rows:  # type: ignore[union-attr]
                chunk_rows = rows_to_write(chunk, types, constants, row_number=ROW, first_row=written)
                written += write_rows(conn, table, chunk_rows)
        _upsert(conn, spec.name, replace(entry, status=PASSED, rows=written))
    return written


def record_quarantine(engine: Engine, model: str, entry: LedgerEntry) -> LedgerEntry | None:
    """Record a rejected delivery of a partition, unless an earlier delivery of it passed: that one stays loaded
    and stays the ledger's entry, so the ledger and the table keep agreeing (a bad re-delivery never makes a good
    day bad; the rejected delivery is kept in quarantine and in the event log). Returns the entry kept, or None
    when ``entry`` was recorded. Under the partition's lock, so a load of the same partition cannot slip between
    the look and the write."""
    with partition_transaction(engine, model, entry.partition) as conn:
        query = sa.select(ledger).where((ledger.c.model == model) & (ledger.c.partition == entry.partition))
        current = conn.execute(query).mappings().first()
        if current is not None and current["status"] == PASSED:
            return _entry(current)
        _upsert(conn, model, entry)
    return None


def partition_row_count(engine: Engine, spec: ModelSpec, partition: str) -> int:
    """Rows stored for one partition."""
    table = batches_table(spec)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c[PARTITION] == partition)
        return int(conn.execute(query).scalar_one())


def rows_of(entries: dict[str, LedgerEntry], partitions: Sequence[str]) -> int:
    """The validated rows of ``partitions`` according to the ledger."""
    return sum(entries[p].rows or 0 for p in partitions if p in entries)


def _upsert(conn: Connection, model: str, entry: LedgerEntry) -> None:
    values = {
        "model": model,
        "partition": entry.partition,
        "status": entry.status,
        "rows": entry.rows,
        "checksum": entry.checksum,
        "validation_result_id": entry.validation_result_id,
        "reason": entry.reason or None,
        "files": json.dumps(list(entry.files)),
        "quarantine_path": entry.quarantine_path,
        "airflow_run_id": entry.airflow_run_id,
        "updated_at": datetime.now(UTC),
    }
    key = (ledger.c.model == model) & (ledger.c.partition == entry.partition)
    conn.execute(ledger.delete().where(key))
    conn.execute(ledger.insert().values(**values))


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        partition=row["partition"],
        status=row["status"],
        checksum=row["checksum"],
        rows=row["rows"],
        validation_result_id=row["validation_result_id"],
        reason=row["reason"],
        files=json.loads(row["files"]),
        quarantine_path=row["quarantine_path"],
        airflow_run_id=row["airflow_run_id"],
        updated_at=row["updated_at"],
    )
