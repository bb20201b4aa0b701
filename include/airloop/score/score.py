"""Batch scoring: each validated partition scored by ``models:/<name>@champion``, and in shadow by the challenger.

Predictions go to ``<model>_predictions`` (:mod:`airloop.store.predictions`), one row per batch row (its stable
``_row``) and alias, with the model version that made them and the checksum of the delivery they were made
from: monitoring leaves out predictions of a partition reloaded since (its checksum changed) until it is scored
again.

**Labels** are the spec's target, delivered in the batch but known only ``label_delay_hours`` after the event:
they are never copied into the predictions; monitoring takes them from the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from airloop.core.contracts import Scored
from airloop.core.errors import AirloopError
from airloop.model.context import ModelContext
from airloop.model.features import model_input
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHALLENGER, CHAMPION
from airloop.store.batches import read_batches
from airloop.store.ledger import ledger_entries
from airloop.store.predictions import scored_deliveries, write_predictions
from airloop.store.schema import BATCH_CHECKSUM, PARTITION, ROW, ROW_INDEX


class ScoringError(AirloopError):
    """Partitions cannot be scored: not validated, or not in the warehouse."""


def partitions_to_score(
    event_extras: Iterable[Mapping[str, Any]],
    requested: Sequence[str] | None,
    unscored: Iterable[str] | None = None,
) -> list[str]:
    """The partitions a score run covers, sorted, each once.

    A run with partitions named (``requested``: a person re-scoring) scores those. Otherwise, given ``unscored``
    (the validated partitions the champion has not scored in their current content), it scores exactly those:
    the partitions of the triggering Asset events are among them, and so is a partition whose event Airflow
    merged into a run already queued. A partition an event names but an earlier run has scored meanwhile is not
    scored again: its predictions stay those of the version that served it. Without ``unscored``, the events'
    ``extra["partition"]``.
    """
    if requested:
        return sorted(set(requested))
    if unscored is not None:
        return sorted(set(unscored))
    return sorted({str(extra["partition"]) for extra in event_extras if extra.get("partition")})


def unscored_partitions(ctx: ModelContext) -> list[str]:
    """Validated partitions without champion predictions of their current content (new, or reloaded since)."""
    passed = {e.partition: e.checksum for e in ledger_entries(ctx.warehouse, ctx.name) if e.passed}
    scored = scored_deliveries(ctx.warehouse, predictions_of(ctx), CHAMPION)
    return sorted(p for p, checksum in passed.items() if (p, checksum) not in scored)


def shadow_due(aliases: Mapping[str, str]) -> bool:
    """Whether the registry's ``aliases`` (alias -> version) name a challenger that is not the champion: only then
    does scoring it in shadow add predictions."""
    challenger = aliases.get(CHALLENGER)
    return challenger is not None and challenger != aliases.get(CHAMPION)


def score_partitions(
    ctx: ModelContext,
    partitions: Sequence[str],
    *,
    alias: str = CHAMPION,
    run_id: str | None = None,
    version: str | None = None,
) -> Scored:
    """Score ``partitions`` with the version ``alias`` points at now (or with ``version``, stored under ``alias``:
    the recorded champion when the alias was moved outside airloop), and store the predictions.

    ``scored`` is False with the ``reason`` when there is nothing to do: no partition, no such alias yet, or a
    challenger that is the champion (its predictions are the champion's already). Raises :class:`ScoringError`
    for partitions that did not pass validation.
    """
    spec, task = ctx.spec, ctx.task
    name = spec.registered_model
    if not partitions:
        return Scored(model=ctx.name, alias=alias, scored=False, reason="no partition to score")
    _check_validated(ctx, partitions)
    table = predictions_of(ctx)
    current = ctx.registry.aliases()
    version = version or current.get(alias)
    if version is None:
        return Scored(model=ctx.name, alias=alias, scored=False, reason=f"{name} has no {alias} yet")
    if alias != CHAMPION and version == current.get(CHAMPION):
        reason = f"the {alias} of {name} is the champion (v{version})"
        return Scored(model=ctx.name, alias=alias, scored=False, reason=reason, version=version)

    # The version is resolved once, then loaded by number: every row of this run comes from the same model even
    # if the alias moves meanwhile, and the stored version is the one that scored.
    pipeline = ctx.registry.load(version)
    rows = read_batches(ctx.warehouse, spec, partitions)
    values = task.prediction_values(task.predict(pipeline, model_input(rows, spec, pipeline)))
    scored_at = datetime.now(UTC)
    written: dict[str, int] = {}
    for partition, part in rows.assign(**values).groupby(PARTITION):
        records = [
            {
                "partition": partition,
                "alias": alias,
                ROW_INDEX: int(row[ROW]),
                "model": name,
                "version": str(version),
                **{column: _plain(row[column]) for column in values},
                "batch_checksum": row[BATCH_CHECKSUM],
                "scored_at": scored_at,
                "airflow_run_id": run_id,
            }
            for row in part[[ROW, *values, BATCH_CHECKSUM]].to_dict("records")
        ]
        written[str(partition)] = write_predictions(ctx.warehouse, table, str(partition), alias, records)
    return Scored(
        model=ctx.name,
        alias=alias,
        scored=True,
        version=str(version),
        partitions=written,
        rows=sum(written.values()),
        table=table.name,
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value the database driver takes."""
    return value.item() if hasattr(value, "item") else value


def _check_validated(ctx: ModelContext, partitions: Sequence[str]) -> None:
    status = {e.partition: e.status for e in ledger_entries(ctx.warehouse, ctx.name)}
    bad = [
        f"{p} ({status.get(p, 'not ingested')})" for p in sorted(set(partitions)) if status.get(p) != "passed"
    ]
    if bad:
        raise ScoringError(f"{ctx.name}: only validated partitions are scored; not these: {', '.join(bad)}")
