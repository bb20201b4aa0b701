"""Retraining: whether a retrain is due (drift, or a champion past the spec's age cap), and what came of it.

Time here is the data's time: a drift event belongs to the last day of its monitored window, the champion's age is
the distance from the last day of its training window to the latest validated partition, and the cooldown is
measured between the last days of the windows retrains trained on, not on the wall clock, so a backfill or an
accelerated replay obeys it exactly as live data would.

The decision (:func:`retrain_choice`) is pure. Its facts come from the warehouse (drift events, past retrains, the
batch ledger), cheap enough to poll from the triggerer, and from the MLflow registry (the champion's training
window), read once per wait by :func:`champion_facts` on a worker. While the triggerer waits, the event log tells
whether the champion moved since (:func:`champion_moved`); the facts are then read again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from airloop import warehouse
from airloop.monitoring import DRIFT_HANDLED, mark_drift_handled, open_drift_events
from airloop.registry import PROMOTION, PROMOTION_REFUSED, ROLLBACK, champion_run
from airloop.settings import Settings, settings

#: Outcomes of a retrain, as written to the drift events it handled.
PROMOTED, KEPT, FAILED = "promoted", "champion kept", "retrain failed"
#: Event kind of a retrain started by the champion's age (with or without drift events handled by it).
AGE_RETRAIN = "age_retrain"


@dataclass(frozen=True)
class RetrainChoice:
    """Whether a retrain is due, on which training window, and why.

    ``event`` is the newest pending drift event the retrain handles (with every older one), if any;
    ``window_end`` the last day of the training window (``None``: no retrain is due); ``age_due`` whether the
    champion's age started it. The ``champion_*`` and ``max_champion_age_days`` fields are set when the age was
    judged.
    """

    event: Mapping[str, Any] | None
    reason: str
    window_end: date | None = None
    age_due: bool = False
    champion_age_days: int | None = None
    max_champion_age_days: int | None = None
    champion_data_end: date | None = None

    @property
    def due(self) -> bool:
        return self.window_end is not None

    def payload(self) -> dict[str, Any] | None:
        """The retrain to run, as the small dict the sensor hands on (XCom); ``None`` when none is due.

        ``partition`` is the training window's last day; ``id`` and ``window`` name the drift event handled
        (``None`` and the data since the champion's training window for an age-only retrain).
        """
        if self.window_end is None:
            return None
        if self.event is not None:
            window = self.event["payload"]["window"]
            out: dict[str, Any] = {
                "id": self.event["id"],
                "partition": self.window_end.isoformat(),
                "window": f"{window['first']}..{window['last']}",
                "drift_share": self.event["payload"].get("drift", {}).get("share"),
                "why": self.reason,
            }
        else:
            unseen = self.champion_data_end + timedelta(days=1) if self.champion_data_end else self.window_end
            out = {
                "id": None,
                "partition": self.window_end.isoformat(),
                "window": f"{unseen.isoformat()}..{self.window_end.isoformat()}",
                "drift_share": None,
                "why": self.reason,
            }
        if self.max_champion_age_days is not None:
            out.update(
                age_due=self.age_due,
                champion_age_days=self.champion_age_days,
                max_champion_age_days=self.max_champion_age_days,
            )
        return out


def retrain_choice(
    pending: Sequence[Mapping[str, Any]],
    last_retrain_day: date | None,
    cooldown_hours: float,
    *,
    refused_in_a_row: int = 0,
    refusal_backoff: float = 1.0,
    max_champion_age_days: int | None = None,
    champion_data_end: date | None = None,
    latest_partition: date | None = None,
) -> RetrainChoice:
    """Whether to retrain now: on drift, on the champion's age, on both at once, or not.

    Pure. ``pending`` are open drift events (oldest first, each with ``partition`` = last day of its window).

    - Drift: the newest pending event is due when its window ends at least ``cooldown_hours`` after the window of
      the last retrain (``last_retrain_day``); the retrain trains up to that day and handles the older events too.
    - Age (only with ``max_champion_age_days``): due when the latest validated partition is more than the cap
      after ``champion_data_end`` (the last day of the champion's training window) and at least
      ``cooldown_hours`` after ``last_retrain_day``, so a champion kept by the gate is not retrained at every
      check. Not judged without a champion. The retrain trains up to the latest validated partition and handles
      every pending drift event with it, even one still within the cooldown: one retrain, never two.
    - Backoff: after ``refused_in_a_row`` retrains the gate refused (the newest ones), the cooldown is
      ``refusal_backoff`` to that power times longer, at most :data:`MAX_BACKOFF` times: drift the last retrains
      could not answer is not answered again at every cooldown.
    """
    cooldown = Cooldown.after(cooldown_hours, refusal_backoff, refused_in_a_row)
    drift = _drift_choice(pending, last_retrain_day, cooldown)
    if max_champion_age_days is None:
        return drift
    cap = max_champion_age_days
    judged = {"max_champion_age_days": cap, "champion_data_end": champion_data_end}
    if champion_data_end is None or latest_partition is None:
        why = (
            "no champion yet: its age is not judged"
            if champion_data_end is None
            else "no validated partition"
        )
        return RetrainChoice(drift.event, f"{drift.reason}; {why}", drift.window_end, **judged)
    age = (latest_partition - champion_data_end).days
    judged["champion_age_days"] = age
    aged = (
        f"champion age {age} days > cap {cap} (trained on data up to {champion_data_end}, latest validated "
        f"partition {latest_partition})"
    )
    if age <= cap:
        return RetrainChoice(
            drift.event,
            f"{drift.reason}; champion age {age} days within the cap {cap}",
            drift.window_end,
            **judged,
        )
    if cooldown.holds(latest_partition, last_retrain_day):
        return RetrainChoice(
            drift.event,
            f"{drift.reason}; {aged}, within the {cooldown} after the retrain on data up to {last_retrain_day}",
            drift.window_end,
            **judged,
        )
    newest = pending[-1] if pending else None
    window_end = (
        max(latest_partition, date.fromisoformat(newest["partition"])) if newest else latest_partition
    )
    if drift.due:
        reason = f"{drift.reason}; {aged}"
    elif newest is not None:
        reason = f"{aged} ({len(pending)} pending drift event(s) handled with it)"
    else:
        reason = aged
    return RetrainChoice(newest, reason, window_end, age_due=True, **judged)


def _drift_choice(
    pending: Sequence[Mapping[str, Any]], last_retrain_day: date | None, cooldown: Cooldown
) -> RetrainChoice:
    if not pending:
        return RetrainChoice(None, "no pending drift event")
    newest = pending[-1]
    day = date.fromisoformat(newest["partition"])
    if cooldown.holds(day, last_retrain_day):
        return RetrainChoice(
            None,
            f"{len(pending)} pending drift event(s), the newest ending {day}, within the {cooldown} after the "
            f"retrain on data up to {last_retrain_day}",
        )
    superseded = len(pending) - 1
    extra = f" ({superseded} older pending event(s) handled with it)" if superseded else ""
    return RetrainChoice(newest, f"drift event {newest['id']} on the window ending {day}{extra}", day)


#: The longest a cooldown grows by the refusal backoff: a multiple of the spec's cooldown.
MAX_BACKOFF = 8.0


@dataclass(frozen=True)
class Cooldown:
    """The time, in data time, that must pass after a retrain before the next one; longer after refusals."""

    hours: float
    base_hours: float
    refused_in_a_row: int = 0

    @classmethod
    def after(cls, base_hours: float, backoff: float, refused_in_a_row: int) -> Cooldown:
        factor = min(MAX_BACKOFF, backoff**refused_in_a_row) if refused_in_a_row else 1.0
        return cls(base_hours * factor, base_hours, refused_in_a_row if factor > 1 else 0)

    def holds(self, day: date, last_retrain_day: date | None) -> bool:
        """Whether ``day`` (the last day of data a retrain would train on) is still within the cooldown."""
        return last_retrain_day is not None and (day - last_retrain_day).days * 24 < self.hours

    def __str__(self) -> str:
        if not self.refused_in_a_row:
            return f"{self.hours:g} h cooldown"
        return (
            f"{self.hours:g} h cooldown ({self.base_hours:g} h, longer after {self.refused_in_a_row} refused "
            "retrain(s) in a row)"
        )


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


def champion_facts(model: str, *, config: Settings | None = None) -> ChampionFacts | None:
    """The champion's training window end, from the MLflow registry; ``None`` when the spec sets no age cap
    (nothing is read then). Calls the tracking server: for workers, not the triggerer."""
    from airloop.ingest import model_spec

    config = config or settings()
    spec = model_spec(model, config)
    if spec.monitoring is None or spec.monitoring.max_champion_age_days is None:
        return None
    from mlflow import MlflowClient

    # The move mark first: a move between the two reads then shows as a move, never goes unseen.
    moves = _last_champion_move(warehouse.engine_for(config.warehouse_url), model)
    client = MlflowClient(config.mlflow_tracking_uri)
    found = champion_run(client, spec.registered_model)
    if found is None:
        return ChampionFacts(None, None, moves)
    version, run = found
    span = run.data.tags.get("data.partitions", "")
    # A version without the tag was not trained by airloop: its data is unknown, so its age is not judged.
    return ChampionFacts(str(version), span.split("..")[-1] or None, moves)


def champion_moved(model: str, facts: ChampionFacts, *, config: Settings | None = None) -> bool:
    """Whether the champion was promoted or rolled back since ``facts`` were read (one event-log query)."""
    engine = warehouse.engine_for((config or settings()).warehouse_url)
    return _last_champion_move(engine, model) > facts.moves_seen


def retrain_check(
    model: str, champion: ChampionFacts | None, *, config: Settings | None = None
) -> RetrainChoice:
    """Whether a retrain of ``model`` is due now, from the warehouse and the given champion facts.

    The champion's age is judged only with ``champion`` (what :func:`champion_facts` returned); nothing here
    calls the tracking server, so the triggerer can poll it.
    """
    from airloop.ingest import model_spec

    config = config or settings()
    spec = model_spec(model, config)
    monitoring = spec.monitoring
    cooldown = monitoring.cooldown_hours if monitoring else 0.0
    backoff = monitoring.refusal_backoff if monitoring else 1.0
    cap = monitoring.max_champion_age_days if monitoring and champion is not None else None
    pending = open_drift_events(model, config=config)
    age_facts: dict[str, Any] = {}
    if cap is not None and champion is not None:
        data_end = date.fromisoformat(champion.data_end) if champion.data_end else None
        latest = (
            _latest_validated_partition(warehouse.engine_for(config.warehouse_url), model)
            if data_end
            else None
        )
        age_facts = {"max_champion_age_days": cap, "champion_data_end": data_end, "latest_partition": latest}
    last_day, refused = retrain_history(model, config)
    return retrain_choice(
        pending, last_day, cooldown, refused_in_a_row=refused, refusal_backoff=backoff, **age_facts
    )


def retrain_history(model: str, config: Settings) -> tuple[date | None, int]:
    """The last day of the newest training window a retrain ran on (promoted or not, on drift or on age), and how
    many of the newest retrains in a row the gate refused."""
    engine = warehouse.engine_for(config.warehouse_url)
    outcomes: dict[str, str] = {}  # window end -> outcome; one retrain can handle several drift events
    for event in warehouse.events_for(engine, model, [DRIFT_HANDLED, AGE_RETRAIN]):
        payload = event["payload"]
        if payload.get("outcome") in (PROMOTED, KEPT) and payload.get("window_last"):
            outcomes[payload["window_last"]] = payload["outcome"]
    refused = 0
    for day in sorted(outcomes, reverse=True):
        if outcomes[day] != KEPT:
            break
        refused += 1
    return (date.fromisoformat(max(outcomes)) if outcomes else None), refused


def retrain_outcome(
    model: str,
    due: Mapping[str, Any],
    train_run_id: str,
    train_state: str | None,
    *,
    config: Settings | None = None,
) -> dict[str, Any]:
    """What the triggered training run decided (from the event log), written to the drift events it handled
    (every pending one up to ``due["id"]``) and, for a retrain on the champion's age, as an ``age_retrain`` event.

    ``due`` is :meth:`RetrainChoice.payload`. A failed training records nothing, so the next check (or a re-run)
    tries again.
    """
    config = config or settings()
    engine = warehouse.engine_for(config.warehouse_url)
    decisions = [
        e
        for e in warehouse.events_for(engine, model, [PROMOTION, PROMOTION_REFUSED])
        if e["payload"].get("airflow_run_id") == train_run_id
    ]
    if decisions:
        last = decisions[-1]
        payload = last["payload"]
        outcome = PROMOTED if last["kind"] == PROMOTION else KEPT
        result = {
            "outcome": outcome,
            "version": payload.get("version") or payload.get("challenger_version"),
            "champion_before": payload.get("from_version") or payload.get("champion_version"),
            "reasons": payload.get("reasons") or [],
        }
    else:
        result = {
            "outcome": FAILED,
            "version": None,
            "champion_before": None,
            "reasons": [f"training run {train_run_id} ended {train_state or 'without a decision'}"],
        }
    age_due = bool(due.get("age_due"))
    if age_due:
        # Why it retrained comes first: the alert shows the reasons, and no drift event explains this one.
        result["reasons"] = [due["why"], *result["reasons"]]
    result.update(model=model, drift_event_id=due["id"], window=due["window"], train_run_id=train_run_id)
    if result["outcome"] == FAILED:
        return result
    record = {**result, "window_last": due["partition"]}
    handled = [
        e for e in open_drift_events(model, config=config) if due["id"] is not None and e["id"] <= due["id"]
    ]
    for drift in handled:
        mark_drift_handled(engine, model, drift["id"], {**record, "superseded": drift["id"] != due["id"]})
    result["handled_events"] = [e["id"] for e in handled]
    if age_due:
        warehouse.record_event(
            engine,
            model,
            AGE_RETRAIN,
            {
                **record,
                "why": due["why"],
                "champion_age_days": due.get("champion_age_days"),
                "max_champion_age_days": due.get("max_champion_age_days"),
                "handled_events": result["handled_events"],
            },
            partition=due["partition"],
            dedup_key=f"{AGE_RETRAIN}:{model}:{train_run_id}",
        )
    return result


def _last_champion_move(engine: sa.Engine, model: str) -> int:
    """The id of the newest promotion or rollback of ``model`` in the event log (0: none yet)."""
    if not sa.inspect(engine).has_table(warehouse.events.name):
        return 0
    events = warehouse.events
    query = sa.select(sa.func.max(events.c.id)).where(
        events.c.model == model, events.c.kind.in_([PROMOTION, ROLLBACK])
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def _latest_validated_partition(engine: sa.Engine, model: str) -> date | None:
    ledger = warehouse.ledger
    if not sa.inspect(engine).has_table(ledger.name):
        return None
    query = sa.select(sa.func.max(ledger.c.partition)).where(
        ledger.c.model == model, ledger.c.status == "passed"
    )
    with engine.connect() as conn:
        latest = conn.execute(query).scalar()
    return date.fromisoformat(latest) if latest else None
