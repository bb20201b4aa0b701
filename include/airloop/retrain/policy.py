"""The retrain policy: whether a retrain is due (drift, or a champion past the spec's age cap), as a pure
function of facts.

Time here is the data's time: a drift event belongs to the last day of its monitored window, the champion's age is
the distance from the last day of its training window to the latest validated partition, and the cooldown is
measured between the last days of the windows retrains trained on, not on the wall clock, so a backfill or an
accelerated replay obeys it exactly as live data would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airloop.core.contracts import RetrainDue
from airloop.core.events import Event
from airloop.core.partitions import hours_between, next_partition

#: Outcomes of a retrain, as written to the drift events it handled.
PROMOTED, KEPT, FAILED = "promoted", "champion kept", "retrain failed"


@dataclass(frozen=True)
class RetrainChoice:
    """Whether a retrain is due, on which training window, and why.

    ``event`` is the newest pending drift event the retrain handles (with every older one), if any;
    ``window_end`` the last partition of the training window (``None``: no retrain is due); ``age_due`` whether the
    champion's age started it. The ``champion_*`` and ``max_champion_age_days`` fields are set when the age was
    judged.
    """

    event: Event | None
    reason: str
    window_end: str | None = None
    age_due: bool = False
    champion_age_days: float | None = None
    max_champion_age_days: float | None = None
    champion_data_end: str | None = None
    schedule: str = "@daily"

    @property
    def due(self) -> bool:
        return self.window_end is not None

    def payload(self) -> RetrainDue | None:
        """The retrain to run, as the sensor hands it on; ``None`` when none is due.

        ``partition`` is the training window's last partition; ``id`` and ``window`` name the drift event handled
        (``None`` and the data since the champion's training window for an age-only retrain).
        """
        if self.window_end is None:
            return None
        if self.event is not None:
            drift = self.event.payload.drift
            handled = {
                "id": self.event.id,
                "window": self.event.payload.window.label,
                "drift_share": drift.share if drift else None,
            }
        else:
            unseen = (
                next_partition(self.champion_data_end, self.schedule)
                if self.champion_data_end
                else self.window_end
            )
            handled = {"id": None, "window": f"{unseen}..{self.window_end}", "drift_share": None}
        age = (
            {
                "age_due": self.age_due,
                "champion_age_days": self.champion_age_days,
                "max_champion_age_days": self.max_champion_age_days,
            }
            if self.max_champion_age_days is not None
            else {}
        )
        return RetrainDue(partition=self.window_end, why=self.reason, **handled, **age)


def retrain_choice(
    pending: Sequence[Event],
    last_retrain_day: str | None,
    cooldown_hours: float,
    *,
    refused_in_a_row: int = 0,
    refusal_backoff: float = 1.0,
    max_champion_age_days: float | None = None,
    champion_data_end: str | None = None,
    latest_partition: str | None = None,
    schedule: str = "@daily",
) -> RetrainChoice:
    """Whether to retrain now: on drift, on the champion's age, on both at once, or not.

    Pure. ``pending`` are open drift events (oldest first, each with ``partition`` = the last partition of its
    window). Days are partition keys (any cadence: :mod:`airloop.core.partitions`); time between them is measured
    between their starts.

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
    judged = {"max_champion_age_days": cap, "champion_data_end": champion_data_end, "schedule": schedule}
    if champion_data_end is None or latest_partition is None:
        why = (
            "no champion yet: its age is not judged"
            if champion_data_end is None
            else "no validated partition"
        )
        return RetrainChoice(drift.event, f"{drift.reason}; {why}", drift.window_end, **judged)
    age = hours_between(champion_data_end, latest_partition) / 24
    judged["champion_age_days"] = age
    aged = (
        f"champion age {age:g} days > cap {cap:g} (trained on data up to {champion_data_end}, latest validated "
        f"partition {latest_partition})"
    )
    if age <= cap:
        return RetrainChoice(
            drift.event,
            f"{drift.reason}; champion age {age:g} days within the cap {cap:g}",
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
    window_end = max(latest_partition, str(newest.partition)) if newest else latest_partition
    if drift.due:
        reason = f"{drift.reason}; {aged}"
    elif newest is not None:
        reason = f"{aged} ({len(pending)} pending drift event(s) handled with it)"
    else:
        reason = aged
    return RetrainChoice(newest, reason, window_end, age_due=True, **judged)


def _drift_choice(
    pending: Sequence[Event], last_retrain_day: str | None, cooldown: Cooldown
) -> RetrainChoice:
    if not pending:
        return RetrainChoice(None, "no pending drift event")
    newest = pending[-1]
    day = str(newest.partition)
    if cooldown.holds(day, last_retrain_day):
        return RetrainChoice(
            None,
            f"{len(pending)} pending drift event(s), the newest ending {day}, within the {cooldown} after the "
            f"retrain on data up to {last_retrain_day}",
        )
    superseded = len(pending) - 1
    extra = f" ({superseded} older pending event(s) handled with it)" if superseded else ""
    return RetrainChoice(newest, f"drift event {newest.id} on the window ending {day}{extra}", day)


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

    def holds(self, day: str, last_retrain_day: str | None) -> bool:
        """Whether partition ``day`` (the last a retrain would train on) is still within the cooldown."""
        return last_retrain_day is not None and hours_between(last_retrain_day, day) < self.hours

    def __str__(self) -> str:
        if not self.refused_in_a_row:
            return f"{self.hours:g} h cooldown"
        return (
            f"{self.hours:g} h cooldown ({self.base_hours:g} h, longer after {self.refused_in_a_row} refused "
            "retrain(s) in a row)"
        )
