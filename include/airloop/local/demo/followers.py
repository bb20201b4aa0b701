"""The other shipped models in ``airloop demo``: models that follow flights_delay's year on their own cadence.

flights_delay is the demo's clock: the replay lands its days. The chained models (``source.after``) ingest by
themselves: their catchup runs wait in the triggerer until flights_delay has settled their interval, then run
their query. What a team would do by hand for them, the demo does through the REST API, without ever waiting on
them (the clock goes on):

* the first champion: ``<model>_train`` is triggered once the model's validated partitions span
  :data:`FIRST_SPAN` of time and make a training window (as flights_delay's first champion trains on January and
  February); a refused one is tried again on the next partition;
* scoring: the score DAG is paused until that champion exists (its runs would have nothing to do), then resumed
  and run once for the partitions validated meanwhile; after that the batches Asset runs it;
* monitoring: a monitor run for each interval of ``monitoring.schedule`` once its window's partitions are validated
  and scored by the champion, as the scheduler would start it on time in production. Drift updates the drift
  Asset and the model's retrain DAG answers it by itself.

At the end the demo waits for the followers' runs to settle and prints their monthly tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airloop.core.partitions import cron_of, next_partition, partition_start, partitions_starting
from airloop.ingest.upstream import unsettled_upstream, upstream_specs
from airloop.local.demo.driver import FINISHED, AirflowApi
from airloop.local.demo.months import model_months
from airloop.model.context import ModelContext
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHAMPION
from airloop.monitor.monitor import monitoring_window
from airloop.store.ledger import ledger_entries
from airloop.store.predictions import scored_partitions
from airloop.train.window import TrainingError, training_window

#: The time a follower's partitions must span before its first champion is trained.
FIRST_SPAN = timedelta(days=56)
STAGES = ("ingest", "score", "train", "monitor", "retrain")


class FollowerError(RuntimeError):
    """A follower cannot go on (a run failed that the demo needs)."""


@dataclass
class Follower:
    """One chained model through the year, advanced a step at a time by :meth:`advance` (never blocking)."""

    api: AirflowApi
    ctx: ModelContext
    until: date
    report: Callable[[str], None] = print
    first_champion: str | None = None
    first_window_end: str | None = None
    train_run: str | None = None
    monitor_runs: dict[str, str] = field(default_factory=dict)  # interval end (ISO) -> run id
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.ctx.name
        self.dag = {stage: f"{self.name}_{stage}" for stage in STAGES}

    def start(self) -> None:
        """Wait for the DAGs; pause scoring until the first champion exists."""
        for stage in STAGES:
            self.api.wait_for_dag(self.dag[stage])
        self.api.call("PATCH", f"/dags/{self.dag['score']}", is_paused=True)

    def advance(self) -> None:
        """One look: start the first champion's training, notice its end, start the monitor runs that are due."""
        if self.first_champion is None:
            self._first_champion()
        if self.first_champion is not None:
            self._monitor_due()

    def settled(self) -> bool:
        """Whether the model has caught up: every partition up to ``until`` whose upstream data has settled is
        ingested, no monitor run is still due, and nothing but ingest runs waiting for upstream data that the
        replay has not landed (past ``until``) is queued or running."""
        self.advance()
        if self._ingestible_missing() or (
            self.first_champion is not None and self._due_intervals(require_scored=False)
        ):
            return False
        return not any(self.api.runs(self.dag[stage], state=state, limit=1)
                       for stage in STAGES if stage != "ingest" for state in ("queued", "running"))  # fmt: skip

    def months(self) -> list[dict[str, Any]]:
        if self.first_window_end is None:
            return []
        start = partition_start(next_partition(self.first_window_end, self.ctx.spec.schedule)).date()
        return model_months(self.ctx, self.first_champion, start, self.until)

    # -- steps ---------------------------------------------------------------------------------------------

    def _passed(self) -> list[str]:
        return [e.partition for e in ledger_entries(self.ctx.warehouse, self.name) if e.passed]

    def _first_champion(self) -> None:
        if self.train_run is not None:
            state = self.api.call("GET", f"/dags/{self.dag['train']}/dagRuns/{self.train_run}")["state"]
            if state not in FINISHED:
                return
            champion = self.ctx.registry.version_of(CHAMPION)
            if state == "success" and champion is not None:
                self.first_champion = champion
                self.report(
                    f"[{self.name}] first champion v{champion} (window up to {self.first_window_end})"
                )
                self.api.call("PATCH", f"/dags/{self.dag['score']}", is_paused=False)
                self.api.trigger(self.dag["score"])
                return
            self.notes.append(f"first training up to {self.first_window_end}: {state}, no champion")
            self.report(
                f"[{self.name}] no first champion from the window up to {self.first_window_end} ({state})"
            )
            self.train_run = None
            return
        passed = self._passed()
        if not passed or (self.first_window_end is not None and passed[-1] <= self.first_window_end):
            return
        end = passed[-1]
        spanned = partition_start(next_partition(end, self.ctx.spec.schedule)) - partition_start(passed[0])
        if spanned < FIRST_SPAN:
            return
        try:
            training_window(self.ctx.warehouse, self.ctx.spec, end)
        except TrainingError:
            return
        self.first_window_end = end
        self.train_run = self.api.trigger(self.dag["train"], {"window_end": end})
        self.report(f"[{self.name}] training the first champion on the window up to {end}")

    def _ingestible_missing(self) -> list[str]:
        """Partitions up to ``until`` whose upstream partitions have all settled but that are not in the ledger."""
        spec = self.ctx.spec
        start = datetime.combine(spec.start_date, datetime.min.time(), UTC)
        horizon = datetime.combine(self.until, datetime.min.time(), UTC) + timedelta(days=1)
        settled = {e.partition for e in ledger_entries(self.ctx.warehouse, self.name)}
        upstreams = upstream_specs(self.ctx)
        missing = []
        for key in partitions_starting(spec.schedule, start, horizon):
            if spec.end_date is not None and partition_start(key).date() > spec.end_date:
                break
            interval = (partition_start(key), partition_start(next_partition(key, spec.schedule)))
            if key not in settled and not unsettled_upstream(self.ctx.warehouse, upstreams, *interval):
                missing.append(key)
        return missing

    def _due_intervals(self, *, require_scored: bool = True) -> list[datetime]:
        """Ends of the monitoring intervals after the first champion's window, up to the end of ``until``, whose
        windows are settled (passed or quarantined) and whose validated partitions are scored
        (``require_scored=False``: their scoring maybe still to come), and that have no monitor run yet."""
        from croniter import croniter

        spec, policy = self.ctx.spec, self.ctx.spec.monitoring
        if policy is None or self.first_window_end is None:
            return []
        entries = ledger_entries(self.ctx.warehouse, self.name)
        settled = {e.partition for e in entries}
        passed = {e.partition for e in entries if e.passed}
        table = predictions_of(self.ctx)
        horizon = datetime.combine(self.until, datetime.min.time(), UTC) + timedelta(days=1)
        ticks = croniter(
            cron_of(policy.schedule), partition_start(next_partition(self.first_window_end, spec.schedule))
        )
        due = []
        while (end := ticks.get_next(datetime)) <= horizon:
            if end.isoformat() in self.monitor_runs:
                continue
            window = monitoring_window(end, policy.window_days, spec.schedule)
            # Every partition of the window settled; the validated ones scored (a quarantined one never will be:
            # the monitor runs on what was scored, as in production).
            if not set(window.partitions) <= settled:
                break
            validated = set(window.partitions) & passed
            scored = scored_partitions(self.ctx.warehouse, table, sorted(validated), CHAMPION)
            if require_scored and scored != validated:
                break
            due.append(end)
        return due

    def _monitor_due(self) -> None:
        for end in self._due_intervals():
            self.monitor_runs[end.isoformat()] = self.api.trigger(self.dag["monitor"], logical_date=end)


def wait_settled(
    followers: list[Follower], timeout: float, alive: Callable[[], bool], poll: float = 2.0
) -> None:
    """Advance the followers until all have settled; raise :class:`FollowerError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    waiting = list(followers)
    while waiting:
        waiting = [f for f in waiting if not f.settled()]
        if not waiting:
            return
        if time.monotonic() > deadline or not alive():
            names = ", ".join(f.name for f in waiting)
            raise FollowerError(f"{names}: runs still going after {timeout:.0f} s: see the Airflow UI")
        time.sleep(poll)
