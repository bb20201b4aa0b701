"""The ingestion stage: validate a landed partition, then load it or quarantine it.

:func:`ingest_partition` validates and loads a passed partition in one call, reading its files once (what the
ingest DAG's ``ingest_batch`` task runs); :func:`quarantine_partition` keeps a failed one.
Each step takes the model's context and hands on a typed contract (:class:`~airloop.core.contracts.Verdict`,
:class:`~airloop.core.contracts.Loaded`, :class:`~airloop.core.contracts.Quarantined`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.core.contracts import Loaded, Quarantined, Verdict
from airloop.core.errors import SourceError
from airloop.core.events import QuarantinePayload
from airloop.core.files import write_json
from airloop.core.partitions import partition_interval
from airloop.ingest.landing import PartitionFiles, file_problems, find_delivery, keep_entry, read_partition
from airloop.ingest.validation import outcome_from_failures, validate_frame
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
    """Validate a landed partition and, if it passed, load the rows just validated (the files are read once).
    Returns the verdict and what was loaded (``None``: the partition failed and awaits quarantine)."""
    verdict, frame = _validated(ctx, partition)
    if not verdict.passed or frame is None:
        return verdict, None
    return verdict, _load_frame(ctx, verdict, frame, run_id)


def _validated(ctx: ModelContext, partition: str) -> tuple[Verdict, pd.DataFrame | None]:
    """The verdict on a landed partition, and its rows as read (``None`` when its files could not be read)."""
    spec, config = ctx.spec, ctx.settings
    landed = find_delivery(spec, ctx.landing, partition)
    problems = file_problems(spec, landed)
    frame = None
    if not problems:
        frame, problems = read_partition(spec, landed)
    if problems or frame is None:
        outcome = outcome_from_failures(spec, partition, problems)
        rows = None
    else:
        outcome = validate_frame(
            frame,
            spec,
            batch_key=partition,
            results_dir=config.reports_dir / "validations",
            data_docs_dir=config.data_docs_dir,
            interval=partition_interval(partition, spec.schedule),
        )
        rows = len(frame)
    verdict = Verdict(
        model=spec.name,
        partition=partition,
        passed=outcome.passed,
        rows=rows,
        checksum=landed.checksum,
        files=[f.name for f in landed.files],
        validation_result_id=outcome.result_id,
        validation_result_path=outcome.result_path,
        failures=outcome.failures,
    )
    return verdict, frame


def _load_frame(ctx: ModelContext, verdict: Verdict, frame: pd.DataFrame, run_id: str | None) -> Loaded:
    """Replace the partition with ``frame`` (the rows that passed) and record it in the ledger, in one transaction."""
    spec = ctx.spec
    sync_table(ctx.warehouse, batches_table(spec))
    rows = replace_partition(ctx.warehouse, spec, frame, _ledger_entry(verdict, PASSED, run_id=run_id))
    return Loaded(model=spec.name, partition=verdict.partition, rows=rows, table=spec.batches_table)


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
