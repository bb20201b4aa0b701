"""The event log: typed events (:mod:`airloop.core.events`) appended to ``airloop_events``, read back typed.

An event with a ``dedup_key`` is written once, however often the task that writes it is retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airloop.core.contracts import Contract
from airloop.core.events import PAYLOADS, Event, EventKind, payload_kind
from airloop.store.schema import events


def event_row(
    model: str, payload: Contract, *, partition: str | None = None, dedup_key: str | None = None
) -> dict[str, Any]:
    """One row of the event log (its kind is the payload's), for writing inside a caller's own transaction."""
    return {
        "model": model,
        "kind": payload_kind(payload).value,
        "partition": partition,
        "dedup_key": dedup_key,
        "payload": json.dumps(payload.to_json(), sort_keys=True),
        "created_at": datetime.now(UTC),
    }


def insert_event(
    conn: Connection,
    model: str,
    payload: Contract,
    *,
    partition: str | None = None,
    dedup_key: str | None = None,
) -> int | None:
    """Append an event in the caller's transaction; with ``dedup_key``, only if no event has that key yet.
    Returns the new event's id, or ``None`` when it was written before."""
    if (
        dedup_key is not None
        and conn.execute(sa.select(events.c.id).where(events.c.dedup_key == dedup_key)).first()
    ):
        return None
    row = event_row(model, payload, partition=partition, dedup_key=dedup_key)
    return int(conn.execute(events.insert().values(**row)).inserted_primary_key[0])


def record_event(
    engine: Engine,
    model: str,
    payload: Contract,
    *,
    partition: str | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Append an event in a transaction of its own; returns whether it was written (see :func:`insert_event`)."""
    try:
        with engine.begin() as conn:
            return insert_event(conn, model, payload, partition=partition, dedup_key=dedup_key) is not None
    except sa.exc.IntegrityError:
        # A concurrent writer inserted the same key between the check and the insert: written once, by it.
        if dedup_key is None or not event_keys(engine, dedup_key) >= {dedup_key}:
            raise
        return False


def events_of(engine: Engine, model: str, kinds: Iterable[EventKind] | None = None) -> list[Event]:
    """A model's events (of ``kinds``), oldest first, payloads typed."""
    query = sa.select(events).where(events.c.model == model).order_by(events.c.id)
    if kinds is not None:
        query = query.where(events.c.kind.in_([EventKind(k).value for k in kinds]))
    with engine.connect() as conn:
        return [_event(row._mapping) for row in conn.execute(query)]


def events_of_kind(
    engine: Engine, kind: EventKind, *, model: str | None = None, created_before: datetime | None = None
) -> list[Event]:
    """Events of ``kind`` (of ``model``, written before ``created_before``), oldest first, payloads typed."""
    query = sa.select(events).where(events.c.kind == EventKind(kind).value).order_by(events.c.id)
    if model is not None:
        query = query.where(events.c.model == model)
    if created_before is not None:
        query = query.where(events.c.created_at < created_before)
    with engine.connect() as conn:
        return [_event(row._mapping) for row in conn.execute(query)]


def event_keys(engine: Engine, prefix: str) -> set[str]:
    """The dedup keys of logged events starting with ``prefix``."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.dedup_key).where(events.c.dedup_key.startswith(prefix)))
        return {r[0] for r in rows}


def event_id(engine: Engine, dedup_key: str) -> int:
    """The id of the event written under ``dedup_key``."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(events.c.id).where(events.c.dedup_key == dedup_key)).scalar_one())


def last_event_id(engine: Engine, model: str, kinds: Iterable[EventKind]) -> int:
    """The id of the newest event of ``kinds`` (0: none yet): one indexed query, cheap enough to poll."""
    query = sa.select(sa.func.max(events.c.id)).where(
        events.c.model == model, events.c.kind.in_([EventKind(k).value for k in kinds])
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def last_event(engine: Engine, model: str, kinds: Iterable[EventKind]) -> Event | None:
    """The newest event of ``kinds`` (None: none yet)."""
    query = (
        sa.select(events)
        .where(events.c.model == model, events.c.kind.in_([EventKind(k).value for k in kinds]))
        .order_by(events.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _event(row._mapping) if row else None


def _event(row: Any) -> Event:
    kind = EventKind(row["kind"])
    return Event(
        id=row["id"],
        model=row["model"],
        kind=kind,
        partition=row["partition"],
        dedup_key=row["dedup_key"],
        payload=PAYLOADS[kind].model_validate(json.loads(row["payload"])),
        created_at=row["created_at"],
    )
