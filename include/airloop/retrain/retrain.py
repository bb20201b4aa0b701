"""Retraining, around the policy (:mod:`airloop.retrain.policy`): the facts it judges, and what a retrain decided.

The policy's facts come from the warehouse (drift events, past retrains, the batch ledger), cheap enough to poll
from the triggerer, and from the MLflow registry (the champion's training window), read once per wait by
:func:`champion_facts` on a worker. While the triggerer waits, the event log tells whether the champion moved
since (:func:`champion_moved`); the facts are then read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import Engine

from airloop.core.contracts import RetrainDue, RetrainOutcome
from airloop.core.events import (
    CHAMPION_MOVES,
    PROMOTION_DECISIONS,
    AgeRetrainPayload,
    DriftHandledPayload,
    EventKind,
)
from airloop.model.context import ModelContext
from airloop.monitor.monitor import mark_drift_handled, open_drift_events
from airloop.retrain.policy import FAILED, KEPT, PROMOTED, RetrainChoice, retrain_choice
from airloop.store.events import events_of, last_event_id, record_event
from airloop.store.ledger import latest_passed_partition


@dataclass(frozen=True)
class ChampionFacts:
    """What the age cap needs from the registry, read on a worker and handed to the trigger (JSON-able).

    ``version`` and ``data_end`` (last day of its training window, ISO) are ``None`` without a champion;
    ``moves_seen`` is the id of the newest champion move in the event log when they were read.
    """

    version: str | None
    data_end: str | None
    moves_seen: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ChampionFacts:
        return cls(
            version=raw.get("version"), data_end=raw.get("data_end"), moves_seen=int(raw["moves_seen"])
        )


def champion_facts(ctx: ModelContext) -> ChampionFacts | None:
    """The champion's training window end, from the MLflow registry; ``None`` when the spec sets no age cap
    (nothing is read then). Calls the tracking server: for workers, not the triggerer."""
    monitoring = ctx.spec.monitoring
    if monitoring is None or monitoring.max_champion_age_days is None:
        return None
    # The move mark first: a move between the two reads then shows as a move, never goes unseen.
    moves = last_event_id(ctx.warehouse, ctx.name, CHAMPION_MOVES)
    found = ctx.registry.champion_run()
    if found is None:
        return ChampionFacts(None, None, moves)
    version, run = found
    span = run.data.tags.get("data.partitions", "")
    # A version without the tag was not trained by airloop: its data is unknown, so its age is not judged.
    return ChampionFacts(str(version), span.split("..")[-1] or None, moves)


def champion_moved(ctx: ModelContext, facts: ChampionFacts) -> bool:
    """Whether the champion was promoted or rolled back since ``facts`` were read (one event-log query)."""
    return last_event_id(ctx.warehouse, ctx.name, CHAMPION_MOVES) > facts.moves_seen


def retrain_check(ctx: ModelContext, champion: ChampionFacts | None) -> RetrainChoice:
    """Whether a retrain is due now, from the warehouse and the given champion facts.

    The champion's age is judged only with ``champion`` (what :func:`champion_facts` returned); nothing here
    calls the tracking server, so the triggerer can poll it.
    """
    engine, monitoring = ctx.warehouse, ctx.spec.monitoring
    cooldown = monitoring.cooldown_hours if monitoring else 0.0
    backoff = monitoring.refusal_backoff if monitoring else 1.0
    cap = monitoring.max_champion_age_days if monitoring and champion is not None else None
    pending = open_drift_events(engine, ctx.name)
    age_facts: dict[str, Any] = {}
    if cap is not None and champion is not None:
        latest = latest_passed_partition(engine, ctx.name) if champion.data_end else None
        age_facts = {
            "max_champion_age_days": cap,
            "champion_data_end": champion.data_end,
            "latest_partition": latest,
            "schedule": ctx.spec.schedule,
        }
    last_day, refused = retrain_history(engine, ctx.name)
    return retrain_choice(
        pending, last_day, cooldown, refused_in_a_row=refused, refusal_backoff=backoff, **age_facts
    )


def retrain_history(engine: Engine, model: str) -> tuple[str | None, int]:
    """The last partition of the newest training window a retrain ran on (promoted or not, on drift or on age), and how
    many of the newest retrains in a row the gate refused."""
    outcomes: dict[str, str] = {}  # window end -> outcome; one retrain can handle several drift events
    for event in events_of(engine, model, [EventKind.DRIFT_HANDLED, EventKind.AGE_RETRAIN]):
        if event.payload.outcome in (PROMOTED, KEPT):
            outcomes[event.payload.window_last] = event.payload.outcome
    refused = 0
    for day in sorted(outcomes, reverse=True):
        if outcomes[day] != KEPT:
            break
        refused += 1
    return (max(outcomes) if outcomes else None), refused


def retrain_outcome(
    ctx: ModelContext, due: RetrainDue, train_run_id: str, train_state: str | None
) -> RetrainOutcome:
    """What the triggered training run decided (from the event log), written to the drift events it handled
    (every pending one up to ``due.id``) and, for a retrain on the champion's age, as an ``age_retrain`` event.

    A failed training records nothing, so the next check (or a re-run) tries again.
    """
    engine = ctx.warehouse
    decisions = [
        e
        for e in events_of(engine, ctx.name, PROMOTION_DECISIONS)
        if e.payload.airflow_run_id == train_run_id
    ]
    if decisions:
        last = decisions[-1].payload
        outcome, version, before = (
            (PROMOTED if decisions[-1].kind == EventKind.PROMOTION else KEPT),
            last.version,
            last.champion_before,
        )
        reasons = list(last.reasons)
    else:
        outcome, version, before = FAILED, None, None
        reasons = [f"training run {train_run_id} ended {train_state or 'without a decision'}"]
    if due.age_due:
        # Why it retrained comes first: the alert shows the reasons, and no drift event explains this one.
        reasons = [due.why, *reasons]
    result = RetrainOutcome(
        model=ctx.name,
        outcome=outcome,
        version=version,
        champion_before=before,
        reasons=reasons,
        drift_event_id=due.id,
        window=due.window,
        train_run_id=train_run_id,
    )
    if outcome == FAILED:
        return result
    handled = [e for e in open_drift_events(engine, ctx.name) if due.id is not None and e.id <= due.id]
    result = result.model_copy(update={"handled_events": [e.id for e in handled]})
    for drift in handled:
        record = {**result.model_dump(), "drift_event_id": drift.id}
        mark_drift_handled(
            engine,
            ctx.name,
            DriftHandledPayload(**record, window_last=due.partition, superseded=drift.id != due.id),
        )
    if due.age_due:
        record_event(
            engine,
            ctx.name,
            AgeRetrainPayload(
                **result.model_dump(),
                window_last=due.partition,
                why=due.why,
                champion_age_days=due.champion_age_days,
                max_champion_age_days=due.max_champion_age_days,
            ),
            partition=due.partition,
            dedup_key=f"{EventKind.AGE_RETRAIN.value}:{ctx.name}:{train_run_id}",
        )
    return result
