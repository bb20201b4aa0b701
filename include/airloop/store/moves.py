"""Champion moves as the warehouse records them: an intent (``pending``), then ``done`` with the event that reports
it, or ``aborted`` with why. The protocol around the registry's aliases is :mod:`airloop.promote.champion`.

Every write here is one short transaction; none is held while the registry is called.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.core.contracts import Contract
from airloop.store.events import insert_event
from airloop.store.schema import champion_moves

PENDING, DONE, ABORTED = "pending", "done", "aborted"
MoveState = Literal["pending", "done", "aborted"]


@dataclass(frozen=True)
class Move:
    """One champion move: ``champion`` from ``expected`` to ``target``; ``previous`` afterwards (None: removed)."""

    key: str
    model: str
    kind: str
    expected: str | None
    target: str
    previous: str | None
    state: MoveState
    payload: dict[str, Any]
    lease_token: str
    lease_until: datetime
    reason: str | None = None
    event_id: int | None = None

    def lease_expired(self, now: datetime | None = None) -> bool:
        return _aware(self.lease_until) <= (now or datetime.now(UTC))


class MoveBusy(Exception):
    """Another move of the model is pending; ``pending`` is it."""

    def __init__(self, pending: Move) -> None:
        super().__init__(f"champion move {pending.key} of {pending.model} is in progress")
        self.pending = pending


def find_move(engine: Engine, key: str) -> Move | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(champion_moves).where(champion_moves.c.key == key)).first()
    return _move(row._mapping) if row else None


def pending_move(engine: Engine, model: str) -> Move | None:
    query = sa.select(champion_moves).where(
        champion_moves.c.model == model, champion_moves.c.state == PENDING
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _move(row._mapping) if row else None


def begin_move(
    engine: Engine,
    *,
    key: str,
    model: str,
    kind: str,
    expected: str | None,
    target: str,
    previous: str | None,
    payload: Contract,
    lease: timedelta,
) -> Move:
    """Write the intent of a move; raises :class:`MoveBusy` when another move of the model is pending (the
    database's unique index on pending moves decides, whoever writes first)."""
    now = datetime.now(UTC)
    values = {
        "key": key,
        "model": model,
        "kind": kind,
        "expected": expected,
        "target": target,
        "previous": previous,
        "state": PENDING,
        "payload": json.dumps(payload.to_json(), sort_keys=True),
        "lease_token": uuid.uuid4().hex,
        "lease_until": now + lease,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            conn.execute(champion_moves.insert().values(**values))
    except sa.exc.IntegrityError:
        # Another process wrote first: this very move (a retry racing its twin), or another move of the model.
        other = pending_move(engine, model)
        if other is not None and other.key != key:
            raise MoveBusy(other) from None
        if (same := find_move(engine, key)) is None:
            raise
        return same
    found = find_move(engine, key)
    assert found is not None
    return found


def hold_lease(engine: Engine, move: Move, lease: timedelta) -> Move | None:
    """Extend a pending move's lease, if the lease is still the one ``move`` was read with (no other process took
    it over since); returns the move as held now, or ``None`` when it is not pending or not ours any more."""
    now = datetime.now(UTC)
    token = uuid.uuid4().hex
    with engine.begin() as conn:
        held = conn.execute(
            champion_moves.update()
            .where(
                champion_moves.c.key == move.key,
                champion_moves.c.state == PENDING,
                champion_moves.c.lease_token == move.lease_token,
            )
            .values(lease_token=token, lease_until=now + lease, updated_at=now)
        ).rowcount
    return replace(move, lease_token=token, lease_until=now + lease) if held else None


def complete_move(engine: Engine, move: Move, event: Contract) -> int | None:
    """Mark ``move`` done and append the event that reports it, in one transaction; returns the event's id.
    A move already done keeps its event (none is written twice)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        updated = conn.execute(
            champion_moves.update()
            .where(champion_moves.c.key == move.key, champion_moves.c.state == PENDING)
            .values(state=DONE, updated_at=now)
        ).rowcount
        if not updated:
            return None
        event_id = insert_event(conn, move.model, event, dedup_key=f"move:{move.key}")
        conn.execute(
            champion_moves.update().where(champion_moves.c.key == move.key).values(event_id=event_id)
        )
        return event_id


def abort_move(engine: Engine, move: Move, reason: str) -> None:
    """Mark a pending ``move`` aborted with ``reason`` (the champion was not the expected one)."""
    with engine.begin() as conn:
        conn.execute(
            champion_moves.update()
            .where(champion_moves.c.key == move.key, champion_moves.c.state == PENDING)
            .values(state=ABORTED, reason=reason, updated_at=datetime.now(UTC))
        )


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns: they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _move(row: Any) -> Move:
    return Move(
        key=row["key"],
        model=row["model"],
        kind=row["kind"],
        expected=row["expected"],
        target=row["target"],
        previous=row["previous"],
        state=row["state"],
        payload=json.loads(row["payload"]),
        lease_token=row["lease_token"],
        lease_until=_aware(row["lease_until"]),
        reason=row["reason"],
        event_id=row["event_id"],
    )
