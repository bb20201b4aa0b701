"""The champion as airloop recorded it, against the registry's alias: a move made behind airloop's back.

The champion alias moves only through airloop (the gate, ``airloop promote``, ``airloop rollback``: each a recorded
move, :mod:`airloop.promote.champion`). Anyone with write access to the MLflow registry can still move the alias
by hand; scoring would then follow a version no gate passed, and nothing in airloop's records would say so. Before
scoring, the alias is compared with the last recorded move: when they disagree (and no move is in progress), the
disagreement is recorded in the event log (once per version the alias was moved to, after each recorded move)
and alerted, and scoring serves the recorded
champion until the alias is put back or the version is promoted through airloop.
"""

from __future__ import annotations

from dataclasses import dataclass

from airloop.core.events import CHAMPION_MOVES, ChampionUnrecordedPayload
from airloop.model.context import ModelContext
from airloop.model.registry import CHAMPION
from airloop.store.events import event_id, last_event, record_event
from airloop.store.moves import pending_move


@dataclass(frozen=True)
class ChampionCheck:
    """The registry's champion, the recorded one, and whether the first may be served."""

    registry: str | None
    recorded: str | None
    #: Every alias of the registered model -> its version, as read for the check.
    aliases: dict[str, str]
    #: Why the registry's champion is not served (None: it is).
    unrecorded: str | None
    #: The event that recorded the last move (0: none).
    recorded_event: int = 0

    @property
    def serve(self) -> str | None:
        """The version scoring uses: the registry's, unless it was moved behind airloop's back."""
        return self.recorded if self.unrecorded else self.registry


def unrecorded_move(registry: str | None, recorded: str | None, *, move_in_progress: bool) -> str | None:
    """Why the registry's champion ``registry`` cannot be trusted, given the last recorded move's ``recorded``
    (None: no move recorded yet); None when they agree, or while a move is in progress (its alias may already be
    set before its record is written)."""
    if move_in_progress or registry == recorded:
        return None
    if recorded is None:
        return (
            f"the champion alias points at v{registry} but airloop recorded no promotion: "
            "it was set outside airloop"
        )
    if registry is None:
        return f"the champion alias was removed outside airloop; the recorded champion is v{recorded}"
    return (
        f"the champion alias points at v{registry} but airloop's last recorded move made v{recorded} the champion: "
        f"it was moved outside airloop (not by the gate, promote or rollback); v{recorded} goes on serving "
        f"until the alias is set back to v{recorded}"
    )


def check_champion(ctx: ModelContext) -> ChampionCheck:
    """Compare the registry's champion alias with the last recorded champion move.

    The registry and the warehouse cannot be read at one instant: a move may switch the alias and write its record
    between the reads. So the record is read before and after the registry; a move pending at either read, or a
    record that changed between them, counts as a move in progress (the next run compares again)."""
    pending_before = pending_move(ctx.warehouse, ctx.name) is not None
    last = last_event(ctx.warehouse, ctx.name, CHAMPION_MOVES)
    aliases = ctx.registry.aliases()
    registry = aliases.get(CHAMPION)
    last_after = last_event(ctx.warehouse, ctx.name, CHAMPION_MOVES)
    pending = (
        pending_before
        or pending_move(ctx.warehouse, ctx.name) is not None
        or (last.id if last else 0) != (last_after.id if last_after else 0)
    )
    recorded = last.payload.version if last is not None else None  # type: ignore[attr-defined]
    return ChampionCheck(
        registry,
        recorded,
        aliases,
        unrecorded_move(registry, recorded, move_in_progress=pending),
        last.id if last is not None else 0,
    )


def record_unrecorded_move(ctx: ModelContext, check: ChampionCheck, *, airflow_run_id: str | None) -> int:
    """Append the disagreement to the event log, once per version the alias was moved to after the last recorded
    move; returns the event's id (new, or written by an earlier run or try)."""
    payload = ChampionUnrecordedPayload(
        registry_version=check.registry, recorded_version=check.recorded, airflow_run_id=airflow_run_id
    )
    key = f"champion_unrecorded:{ctx.name}:{check.recorded_event}:{check.registry}"
    record_event(ctx.warehouse, ctx.name, payload, dedup_key=key)
    return event_id(ctx.warehouse, key)
