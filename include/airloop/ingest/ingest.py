"""The ingestion stage: validate a landed partition, then load it or quarantine it.

:func:`ingest_partition` validates and loads a passed partition in one call (what the ingest DAG's
``ingest_batch`` task runs), reading its files once, or, for a Parquet delivery of more rows than the
``ingest_chunk_rows`` setting, twice, a chunk at a time (:func:`validate_partition`, then :func:`load_partition`);
:func:`quarantine_partition` keeps a failed one.
Each step takes the model's context and hands on a typed contract (:class:`~airloop.core.contracts.Verdict`,
:class:`~airloop.core.contracts.Loaded`, :class:`~airloop.core.contracts.Quarantined`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.core.contracts import Loaded, Quarantined, Verdict
from airloop.core.errors import SourceError
from airloop.core.events import QuarantinePayload
from airloop.core.files import write_json
from airloop.core.partitions import partition_interval
from airloop.ingest.landing import (
    ParquetChunks,
    PartitionFiles,
    UnreadableChunk,
    file_problems,
    find_delivery,
    keep_entry,
    parquet_chunks,
    read_partition,
)
from airloop.ingest.validation import outcome_from_failures, validate_chunks
from airloop.model.context import ModelContext
from airloop.store.db import sync_table
from airloop.store.events import record_event
from airloop.store.ledger import PASSED, QUARANTINED, LedgerEntry, record_quarantine, replace_partition
from airloop.store.schema import batches_table

if TYPE_CHECKING:
    import pandas as pd


def ingest_partition(
    ctx: ModelContext, partition: str, *, run_id: str | None = None
) -> tuple[Verdict, Loaded | None]:
    """Validate a landed partition and, if it passed, load the rows just validated. Returns the verdict and what
    was loaded (``None``: the partition failed and awaits quarantine).

    A delivery read whole is read once, its frame validated and loaded. A Parquet delivery of more rows than the
    ``ingest_chunk_rows`` setting is validated a chunk at a time, then read again a chunk at a time into the
    load's transaction, which commits only if the files still hold what was validated (their checksum)."""
    verdict, rows = validate_partition(ctx, partition)
    if not verdict.passed or rows is None:
        return verdict, None
    return verdict, load_partition(ctx, verdict, rows, run_id=run_id)


def validate_partition(
    ctx: ModelContext, partition: str
) -> tuple[Verdict, pd.DataFrame | ParquetChunks | None]:
    """The verdict on a landed partition, and its rows as read, or the chunks to read them by (``None`` when its
    files could not be read)."""
    spec, config = ctx.spec, ctx.settings
    landed = find_delivery(spec, ctx.landing, partition)
    problems = file_problems(spec, landed)
    rows: pd.DataFrame | ParquetChunks | None = None
    if not problems:
        rows, problems = parquet_chunks(spec, landed, config.ingest_chunk_rows)
        if rows is None and not problems:
            rows, problems = read_partition(spec, landed)
    if problems or rows is None:
        outcome = outcome_from_failures(spec, partition, problems)
        count = None
    else:
        try:
            outcome = validate_chunks(
                rows.frames() if isinstance(rows, ParquetChunks) else [rows],
                spec,
                batch_key=partition,
                results_dir=config.reports_dir / "validations",
                data_docs_dir=config.data_docs_dir,
                interval=partition_interval(partition, spec.schedule),
                key_columns=rows.frames if isinstance(rows, ParquetChunks) else None,
            )
            count = rows.rows if isinstance(rows, ParquetChunks) else len(rows)
        except UnreadableChunk as exc:
            outcome, count = outcome_from_failures(spec, partition, [str(exc)]), None
    verdict = Verdict(
        model=spec.name,
        partition=partition,
        passed=outcome.passed,
        rows=count,
        checksum=landed.checksum,
        files=[f.name for f in landed.files],
        validation_result_id=outcome.result_id,
        validation_result_path=outcome.result_path,
        failures=outcome.failures,
    )
    return verdict, rows


def load_partition(
    ctx: ModelContext, verdict: Verdict, rows: pd.DataFrame | ParquetChunks, *, run_id: str | None = None
) -> Loaded:
    """Replace the partition with the rows that passed (:func:`validate_partition`'s) and record it in the
    ledger, in one transaction; chunks are read again into it, and it commits only if the files still hold what
    was validated."""
    spec = ctx.spec
    sync_table(ctx.warehouse, batches_table(spec))
    entry = _ledger_entry(verdict, PASSED, run_id=run_id)
    written = replace_partition(
        ctx.warehouse,
        spec,
        _chunks_as_validated(ctx, verdict, rows) if isinstance(rows, ParquetChunks) else rows,
        entry,
    )
    return Loaded(model=spec.name, partition=verdict.partition, rows=written, table=spec.batches_table)


def _chunks_as_validated(
    ctx: ModelContext, verdict: Verdict, chunks: ParquetChunks
) -> Iterator[pd.DataFrame]:
    """The chunks read again for the load; after the last, a check that the files still hold what was validated
    (raised inside the load's transaction, it rolls the load back)."""
    yield from chunks.frames()
    _unchanged_since_validation(ctx, verdict)


def quarantine_partition(ctx: ModelContext, verdict: Verdict, *, run_id: str | None = None) -> Quarantined:
    """Keep a rejected partition exactly as received, with its validation result, and record it (in the ledger
    unless an earlier delivery of it passed and stays loaded: :func:`airloop.store.ledger.record_quarantine`).

    The copy lives in ``<quarantine_dir>/<model>/date=<partition>/<checksum[:12]>/``: a re-run of the same data
    lands in the same folder, and a corrected-but-still-bad delivery is kept beside the first.
    """
    partition = verdict.partition
    landed = _unchanged_since_validation(ctx, verdict)
    target = ctx.quarantine / f"date={partition}" / verdict.checksum[:12]
    target.mkdir(parents=True, exist_ok=True)
    # The manifest goes with the files it describes: the delivery is kept whole.
    received = [*landed.files, *([landed.manifest] if landed.manifest is not None else [])]
    not_kept = [why for file in received if (why := keep_entry(file, target / file.name)) is not None]
    result_path = verdict.validation_result_path
    if result_path and Path(result_path).is_file():
        shutil.copy2(result_path, target / "validation_result.json")
    write_json(target / "verdict.json", {**verdict.to_json(), "reason": verdict.reason, "not_kept": not_kept})
    entry = _ledger_entry(verdict, QUARANTINED, run_id=run_id, quarantine_path=str(target))
    kept = record_quarantine(ctx.warehouse, ctx.name, entry)
    record_event(
        ctx.warehouse,
        ctx.name,
        QuarantinePayload(reason=verdict.reason, path=str(target), files=verdict.files, run_id=run_id),
        partition=partition,
        dedup_key=f"quarantine:{ctx.name}:{partition}:{verdict.checksum}",
    )
    return Quarantined(
        model=ctx.name,
        partition=partition,
        quarantine_path=str(target),
        reason=verdict.reason,
        rows=verdict.rows,
        files=verdict.files,
        checksum=verdict.checksum,
        still_loaded=kept.rows if kept is not None else None,
    )


def _ledger_entry(
    verdict: Verdict, status: str, *, run_id: str | None, quarantine_path: str | None = None
) -> LedgerEntry:
    return LedgerEntry(
        partition=verdict.partition,
        status=status,
        rows=verdict.rows,
        checksum=verdict.checksum,
        validation_result_id=verdict.validation_result_id,
        reason=verdict.reason or None,
        files=list(verdict.files),
        quarantine_path=quarantine_path,
        airflow_run_id=run_id,
    )


def _unchanged_since_validation(ctx: ModelContext, verdict: Verdict) -> PartitionFiles:
    landed = find_delivery(ctx.spec, ctx.landing, verdict.partition)
    if landed.checksum != verdict.checksum:
        raise SourceError(
            f"partition {verdict.partition}: files in {landed.directory} changed after validation "
            f"(checksum {verdict.checksum[:12]} -> {landed.checksum[:12]}); clear the run to validate them again"
        )
    return landed
