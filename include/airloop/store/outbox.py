"""The alert outbox, kept in the event log: an alert is queued (``alert_queued``) before its first delivery, and each
channel that delivers it is recorded (``alert_sent``); an alert with a channel not yet recorded is undelivered.

Both records carry keys derived from the alert's own key (e.g. ``alert:quarantine:<model>:<partition>:<checksum>:``):
the queued record ``outbox:<key>``, a delivery ``<key><channel>``. Each is written once however often a task is
retried, so an alert is queued once and recorded as delivered once per channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.core.events import AlertQueuedPayload, AlertSentPayload, EventKind
from airloop.store.events import events_of_kind, record_event
from airloop.store.schema import events

#: The prefix of a queued alert's dedup key.
QUEUED_PREFIX = "outbox:"


@dataclass(frozen=True)
class Undelivered:
    """A queued alert that a channel has not delivered yet."""

    event_id: int
    model: str
    partition: str | None
    queued_at: datetime
    alert: AlertQueuedPayload
    missing: tuple[str, ...]


def queue_alert(
    engine: Engine, model: str, alert: AlertQueuedPayload, *, partition: str | None = None
) -> bool:
    """Queue ``alert`` under its key; returns whether it was new (a retry finds it queued already)."""
    return record_event(engine, model, alert, partition=partition, dedup_key=QUEUED_PREFIX + alert.key)


def delivered_channels(engine: Engine, key: str, channels: Iterable[str]) -> set[str]:
    """Which of ``channels`` are recorded as having delivered the alert keyed ``key`` (exact keys: another alert
    whose key starts with this one settles nothing here)."""
    wanted = {key + channel: channel for channel in channels}
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(events.c.dedup_key).where(events.c.dedup_key.in_(list(wanted)))
        ).scalars()
        return {wanted[k] for k in found}


def record_delivery(
    engine: Engine, model: str, key: str, sent: AlertSentPayload, *, partition: str | None = None
) -> bool:
    """Record that ``sent.channel`` delivered the alert keyed ``key``; once per channel."""
    return record_event(engine, model, sent, partition=partition, dedup_key=key + sent.channel)


def undelivered_alerts(
    engine: Engine, model: str | None = None, *, queued_before: datetime | None = None
) -> list[Undelivered]:
    """Queued alerts (of ``model``, queued before ``queued_before``) that a channel has not delivered, oldest
    first, each with the channels still owed."""
    queued = events_of_kind(engine, EventKind.ALERT_QUEUED, model=model, created_before=queued_before)
    if not queued:
        return []
    with engine.connect() as conn:
        delivered = set(
            conn.execute(
                sa.select(events.c.dedup_key).where(
                    events.c.kind == EventKind.ALERT_SENT.value, events.c.dedup_key.is_not(None)
                )
            ).scalars()
        )
    owed = []
    for event in queued:
        alert = event.payload
        assert isinstance(alert, AlertQueuedPayload)
        missing = tuple(c for c in alert.channels if alert.key + c not in delivered)
        if missing:
            owed.append(Undelivered(event.id, event.model, event.partition, event.created_at, alert, missing))
    return owed
