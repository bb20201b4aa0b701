"""Champion moves whose record can never diverge from the registry, whatever line a crash stops at.

A move (a promotion or a rollback) is carried out in four steps, each safe to repeat:

1. **intent**: a row in ``airloop_champion_moves`` under a deterministic key (the same decision retried gives the
   same key), written before anything else; at most one move of a model is pending (a unique index);
2. **previous**: the alias ``previous`` set (or removed, by a rollback);
3. **champion**: the alias ``champion`` moved to the target, the switch scoring sees;
4. **done**: the intent marked done and its event (``promotion`` / ``rollback``) appended, in one transaction.

A retry under the same key finds the intent and finishes whatever is missing; a move of another key finds it
pending and waits for it, or, once the pending move's lease has run out (its process died), finishes it first.
Before moving, the champion must still be the one the decision was made against (or already the target, when
a crashed attempt got that far): otherwise the move is aborted with the reason. No database lock is held while
the registry is called: every write is a short transaction of its own.

MLflow has no compare-and-set on aliases: a process stalled inside a registry call for longer than its lease can
still move an alias after another process took the move over. The lease (:data:`LEASE`) is longer than the
tracking client's own retries, and each registry call is preceded by a check that the lease is still held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from airloop.core.errors import AirloopError
from airloop.core.events import PromotionPayload, RollbackPayload
from airloop.model.registry import CHAMPION, PREVIOUS, Registry
from airloop.store.moves import (
    ABORTED,
    DONE,
    Move,
    MoveBusy,
    abort_move,
    begin_move,
    complete_move,
    find_move,
    hold_lease,
    pending_move,
)

#: How long a move's process holds it: past this, another process may finish it.
LEASE = timedelta(minutes=10)
#: The named steps of a move, in order (what ``step`` callbacks are told; tests stop a process at each).
STEPS = ("intent", "previous", "champion", "done")


class MoveError(AirloopError):
    """A champion move could not be carried out (its lease was taken over, or another move never ended)."""


@dataclass(frozen=True)
class MoveRequest:
    """A decided move: ``champion`` from ``expected`` to ``target``; ``previous`` afterwards (None: removed);
    ``record`` is the event that reports it once done."""

    key: str
    kind: str
    target: str
    expected: str | None
    previous: str | None
    record: PromotionPayload | RollbackPayload


@dataclass(frozen=True)
class MoveOutcome:
    """Whether the champion moved; why not, otherwise. ``recovered`` lists moves of others finished on the way."""

    moved: bool
    reason: str | None = None
    event_id: int | None = None
    recovered: tuple[Move, ...] = ()


def move_champion(
    engine: Engine,
    registry: Registry,
    model: str,
    request: MoveRequest,
    *,
    step: Callable[[str], None] = lambda _name: None,
    poll: float = 1.0,
) -> MoveOutcome:
    """Carry out ``request`` (or the rest of it, after a crash), or say why not."""
    recovered: list[Move] = []
    while True:
        move = find_move(engine, request.key)
        if move is not None:
            break
        other = pending_move(engine, model)
        if other is not None:
            if not other.lease_expired():
                time.sleep(poll)
                continue
            try:
                recovered.append(finish(engine, registry, other))
            except MoveError:
                pass  # another process took it over first: wait for it, as for any pending move
            continue
        try:
            move = begin_move(
                engine,
                key=request.key,
                model=model,
                kind=request.kind,
                expected=request.expected,
                target=request.target,
                previous=request.previous,
                payload=request.record,
                lease=LEASE,
            )
        except MoveBusy:
            continue  # another move was written first: wait for it, as above
        step("intent")
        break
    if move.state == DONE:
        return MoveOutcome(True, event_id=move.event_id, recovered=tuple(recovered))
    if move.state == ABORTED:
        return MoveOutcome(False, reason=move.reason, recovered=tuple(recovered))
    done = _carry_out(engine, registry, move, step)
    return MoveOutcome(done.state == DONE, done.reason, done.event_id, tuple(recovered))


def finish(engine: Engine, registry: Registry, move: Move) -> Move:
    """Finish a pending move whose process died (its lease ran out): done or aborted, as the registry says."""
    return _carry_out(engine, registry, move, lambda _name: None)


def _carry_out(engine: Engine, registry: Registry, move: Move, step: Callable[[str], None]) -> Move:
    move = _hold(engine, move)
    current = registry.version_of(CHAMPION)
    if current not in (move.expected, move.target):
        reason = (
            f"the champion changed since the decision: it was {_v(move.expected)}, it is now {_v(current)}; "
            "another promotion or rollback happened in between"
        )
        abort_move(engine, move, reason)
        return _reread(engine, move)
    if move.previous is None:
        if registry.version_of(PREVIOUS) is not None:
            registry.client.delete_registered_model_alias(registry.name, PREVIOUS)
    else:
        registry.client.set_registered_model_alias(registry.name, PREVIOUS, move.previous)
    step("previous")
    move = _hold(engine, move)
    # The switch itself: one registry call, scoring sees the old champion or the new one, nothing between.
    registry.client.set_registered_model_alias(registry.name, CHAMPION, move.target)
    step("champion")
    record = _record_of(move)
    complete_move(engine, move, record)
    step("done")
    return _reread(engine, move)


def _hold(engine: Engine, move: Move) -> Move:
    """Renew the move's lease if this process still holds it (the lease is where it was left); else stop."""
    renewed = hold_lease(engine, move, LEASE)
    if renewed is None:
        raise MoveError(f"champion move {move.key} was taken over by another process: its lease ran out")
    return renewed


def _record_of(move: Move) -> PromotionPayload | RollbackPayload:
    model = PromotionPayload if move.kind == "promotion" else RollbackPayload
    return model.model_validate(move.payload)


def _reread(engine: Engine, move: Move) -> Move:
    found = find_move(engine, move.key)
    assert found is not None
    return found


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"
