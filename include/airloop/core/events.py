"""The event vocabulary: every kind of event airloop writes to the warehouse's event log, each with its typed payload.

The event log is the loop's memory: what was quarantined, which drift was found and how it was handled, every
champion move and refusal, every alert delivered. What is derived from it (a drift event's status, a model's
promotion history, the outcome of a retrain) is computed when read, never stored beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from airloop.core.contracts import Contract, MonitorResult, RetrainOutcome


class EventKind(StrEnum):
    """Every kind of event, as stored in the event log's ``kind`` column."""

    QUARANTINE = "quarantine"
    PROMOTION = "promotion"
    PROMOTION_REFUSED = "promotion_refused"
    ROLLBACK = "rollback"
    DRIFT = "drift"
    DRIFT_HANDLED = "drift_handled"
    AGE_RETRAIN = "age_retrain"
    ALERT_SENT = "alert_sent"
    ALERT_QUEUED = "alert_queued"
    CHAMPION_UNRECORDED = "champion_unrecorded"


#: The kinds that move the champion.
CHAMPION_MOVES = (EventKind.PROMOTION, EventKind.ROLLBACK)
#: The kinds that record a promotion decision (moved or refused).
PROMOTION_DECISIONS = (EventKind.PROMOTION, EventKind.PROMOTION_REFUSED)


class QuarantinePayload(Contract):
    reason: str
    path: str
    files: list[str]
    run_id: str | None


class PromotionPayload(Contract):
    """``version`` became the champion in place of ``champion_before``."""

    version: str
    champion_before: str | None
    run_id: str
    forced: bool
    by: str | None = None
    reasons: list[str]
    airflow_run_id: str | None
    decision: dict[str, Any]
    #: The champion move that carried it out (its intent record).
    move_key: str


class RollbackPayload(Contract):
    """The champion went back from ``champion_before`` to ``version``."""

    version: str
    champion_before: str
    by: str | None
    reasons: list[str]
    move_key: str


class PromotionRefusedPayload(Contract):
    """``version`` did not replace ``champion_before``; ``stage`` says where it was refused."""

    version: str
    champion_before: str | None
    run_id: str
    stage: str
    reasons: list[str]
    airflow_run_id: str | None
    decision: dict[str, Any]


class DriftPayload(MonitorResult):
    """A monitored window that drifted, as the monitor run found it. Pending until a retrain handles it
    (a ``drift_handled`` event names it): the status is derived, not stored."""

    airflow_run_id: str | None = None


class DriftHandledPayload(RetrainOutcome):
    """How a retrain handled a drift event: the retrain's outcome, the last day of data it trained on."""

    window_last: str
    #: True for an older pending event closed by a retrain on a newer one (or on the champion's age).
    superseded: bool = False


class AgeRetrainPayload(RetrainOutcome):
    """A retrain started by the champion's age (with the drift events it handled on the way)."""

    window_last: str
    why: str
    champion_age_days: float | None
    max_champion_age_days: float | None


class AlertSentPayload(Contract):
    channel: str
    conn_id: str
    subject: str
    dag_id: str | None
    run_id: str | None


class AlertQueuedPayload(Contract):
    """An alert as composed, kept before its first delivery: undelivered while a channel in ``channels`` has no
    ``alert_sent`` event under ``key`` + the channel's name (the alert outbox, :mod:`airloop.store.outbox`)."""

    key: str
    channels: list[str]
    subject: str
    text: str
    html: str
    slack_text: str
    dag_id: str | None
    run_id: str | None
    #: The task instance that queued it (None for an alert queued outside a task).
    task_id: str | None = None
    map_index: int | None = None


class ChampionUnrecordedPayload(Contract):
    """The registry's champion alias pointed at ``registry_version`` where airloop's last recorded move left
    ``recorded_version``: it was moved behind airloop's back (not by the gate, promote or rollback). Scoring went on
    with ``recorded_version``."""

    registry_version: str | None
    recorded_version: str | None
    airflow_run_id: str | None


PAYLOADS: dict[EventKind, type[Contract]] = {
    EventKind.QUARANTINE: QuarantinePayload,
    EventKind.PROMOTION: PromotionPayload,
    EventKind.PROMOTION_REFUSED: PromotionRefusedPayload,
    EventKind.ROLLBACK: RollbackPayload,
    EventKind.DRIFT: DriftPayload,
    EventKind.DRIFT_HANDLED: DriftHandledPayload,
    EventKind.AGE_RETRAIN: AgeRetrainPayload,
    EventKind.ALERT_SENT: AlertSentPayload,
    EventKind.ALERT_QUEUED: AlertQueuedPayload,
    EventKind.CHAMPION_UNRECORDED: ChampionUnrecordedPayload,
}


def payload_kind(payload: Contract) -> EventKind:
    """The kind an event with ``payload`` is: a payload type belongs to exactly one kind."""
    for kind, model in PAYLOADS.items():
        if type(payload) is model:
            return kind
    raise TypeError(f"{type(payload).__name__} is not an event payload")


@dataclass(frozen=True)
class Event:
    """One row of the event log, its payload typed by its kind (:data:`PAYLOADS`)."""

    id: int
    model: str
    kind: EventKind
    partition: str | None
    dedup_key: str | None
    payload: Any
    created_at: datetime
