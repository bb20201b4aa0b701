"""The ingestion stage: validate a landed partition, then load it or quarantine it.

Each step takes the model name and the partition (the Airflow data interval's start date) and returns a small
JSON-able dict, so Airflow tasks pass only ids, counts and paths between them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from airloop import warehouse
from airloop.errors import SourceError
from airloop.settings import Settings, settings
from airloop.sources import PartitionFiles, file_problems, find_partition, read_partition
from airloop.spec import ModelSpec, load_spec


def model_spec(model: str, config: Settings | None = None) -> ModelSpec:
    """The spec of ``model`` from the configured models folder."""
    config = config or settings()
    return load_spec(config.models_dir / f"{model}.yaml")


def validate_partition(model: str, partition: str, config: Settings | None = None) -> dict[str, Any]:
    """Check a landed partition against the model's contract: files first, then the Great Expectations suite."""
    from airloop.validation import outcome_from_failures, validate_frame

    config = config or settings()
    spec = model_spec(model, config)
    landed = find_partition(config.landing_for(model), partition)
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
        )
        rows = len(frame)
    return {
        "model": model,
        "partition": partition,
        "passed": outcome.passed,
        "rows": rows,
        "checksum": landed.checksum,
        "files": [f.name for f in landed.files],
        "validation_result_id": outcome.result_id,
        "validation_result_path": outcome.result_path,
        "reason": outcome.reason,
        "failures": outcome.failures,
    }


def load_partition(
    model: str, verdict: dict[str, Any], *, run_id: str | None = None, config: Settings | None = None
) -> dict[str, Any]:
    """Write a validated partition to the warehouse, replacing any earlier load of it, and record it."""
    config = config or settings()
    spec = model_spec(model, config)
    partition = verdict["partition"]
    if not verdict["passed"]:
        raise ValueError(f"partition {partition} of {model} did not pass validation: {verdict['reason']}")
    landed = _unchanged_since_validation(config.landing_for(model), verdict)
    frame, problems = read_partition(spec, landed)
    if problems or frame is None:
        raise SourceError(f"partition {partition} of {model}: {'; '.join(problems)}")
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine, spec)
    rows = warehouse.replace_partition(
        engine,
        spec,
        partition,
        frame,
        ledger_row={**_ledger_fields(verdict), "airflow_run_id": run_id},
    )
    return {"model": model, "partition": partition, "rows": rows, "table": spec.batches_table}


def quarantine_partition(
    model: str, verdict: dict[str, Any], *, run_id: str | None = None, config: Settings | None = None
) -> dict[str, Any]:
    """Keep a rejected partition exactly as received, with its validation result, and record it.

    The copy lives in ``<quarantine_dir>/<model>/date=<partition>/<checksum[:12]>/``: a re-run of the same data
    lands in the same folder, and a corrected-but-still-bad delivery is kept beside the first.
    """
    config = config or settings()
    partition = verdict["partition"]
    landed = _unchanged_since_validation(config.landing_for(model), verdict)
    target = config.quarantine_for(model) / f"date={partition}" / verdict["checksum"][:12]
    target.mkdir(parents=True, exist_ok=True)
    for file in landed.files:
        shutil.copy2(file, target / file.name)
    result_path = verdict.get("validation_result_path")
    if result_path and Path(result_path).is_file():
        shutil.copy2(result_path, target / "validation_result.json")
    (target / "verdict.json").write_text(json.dumps(verdict, indent=2, sort_keys=True))
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine)
    ledger_row = {
        **_ledger_fields(verdict),
        "status": "quarantined",
        "quarantine_path": str(target),
        "airflow_run_id": run_id,
    }
    warehouse.record_batch(engine, model, partition, ledger_row)
    warehouse.record_event(
        engine,
        model,
        "quarantine",
        {"reason": verdict["reason"], "path": str(target), "files": verdict["files"], "run_id": run_id},
        partition=partition,
        dedup_key=f"quarantine:{model}:{partition}:{verdict['checksum']}",
    )
    return {
        "model": model,
        "partition": partition,
        "quarantine_path": str(target),
        "reason": verdict["reason"],
        "rows": verdict["rows"],
        "files": verdict["files"],
        "checksum": verdict["checksum"],
    }


def _ledger_fields(verdict: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "passed" if verdict["passed"] else "quarantined",
        "rows": verdict["rows"],
        "checksum": verdict["checksum"],
        "validation_result_id": verdict["validation_result_id"],
        "reason": verdict["reason"],
        "files": verdict["files"],
    }


def _unchanged_since_validation(landing: Path, verdict: dict[str, Any]) -> PartitionFiles:
    landed = find_partition(landing, verdict["partition"])
    if landed.checksum != verdict["checksum"]:
        raise SourceError(
            f"partition {verdict['partition']}: files in {landed.directory} changed after validation "
            f"(checksum {verdict['checksum'][:12]} -> {landed.checksum[:12]}); clear the run to validate them again"
        )
    return landed
