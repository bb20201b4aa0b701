"""The year of ``airloop demo``: 2013 replayed through the whole loop on the running stack, the demo being the clock.

1. January and February land at once and are ingested (the ingest DAG's catchup runs pick them up); the first
   champion is trained on them through ``<model>_train``.
2. From March on, the demo lands one week at a time (Sunday to Saturday, the weeks of the ``@weekly`` monitor).
   Once a week is ingested and scored (the score DAG runs off the batches Asset), the demo starts the week's
   monitor run (a manual run whose logical date is the Sunday after: the week is its data interval) and lands the
   next week, as the next batch would arrive in production whether or not monitoring has finished. A monitor run
   that finds drift updates the drift Asset; the retrain DAG then retrains and gates; the demo waits for that to
   finish before it lands the week after. So in a week that drifted, the following week was already landed and
   may be scored by the champion of the moment; the week after is scored by whatever the loop decided.
3. The end: a table per month (rows, drift share, retrains, the champion versions that scored the month, the AUC
   of those predictions on the month's labels, and the AUC of the first champion, never retrained, on the same
   rows).

Everything happens through the REST API, the landing folder and the services, as in production; the demo only
reads the warehouse and the registry to report.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from airloop.core.errors import AirloopError
from airloop.core.events import EventKind
from airloop.core.settings import Settings
from airloop.local.demo.driver import AirflowApi
from airloop.local.demo.followers import Follower, wait_settled
from airloop.local.demo.months import model_months
from airloop.local.demo.replay import day_frame, days, write_partition
from airloop.model.context import ModelContext
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHAMPION
from airloop.monitor.monitor import open_drift_events
from airloop.retrain.retrain import retrain_check
from airloop.store.db import engine_for
from airloop.store.events import events_of
from airloop.store.ledger import ledger_entries
from airloop.store.monitoring import monitoring_history
from airloop.store.predictions import scored_partitions
from airloop.store.schema import ledger

FIRST_DAY = date(2013, 1, 1)
#: The first champion trains on January and February.
FIRST_TRAINING_END = date(2013, 2, 28)
LAST_DAY = date(2013, 12, 31)
#: Seconds between two looks at the warehouse while waiting, and between two checks for failed runs.
POLL, CHECK_EVERY = 0.5, 5.0


class DemoError(AirloopError):
    """The replay cannot go on: a run failed or a step did not finish in time."""


@dataclass
class Week:
    """Days landed together; ``monitor_at`` is the logical date of the monitor run covering ``first..last``
    (``None`` for days that are not a whole monitored week)."""

    days: list[date]
    monitor_at: datetime | None = None
    monitoring: dict[str, Any] | None = None
    retrain: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.days[0]:%m-%d}..{self.days[-1]:%m-%d}"


@dataclass
class YearReplay:
    """The replay, step by step; ``report`` gets each progress line."""

    api: AirflowApi
    ctx: ModelContext
    until: date = LAST_DAY
    report: Callable[[str], None] = print
    alive: Callable[[], bool] = lambda: True
    timings: dict[str, float] = field(default_factory=dict)
    weeks: list[Week] = field(default_factory=list)
    first_champion: str | None = None
    #: The chained models that follow the year on their own cadence (:mod:`airloop.local.demo.followers`).
    followers: list[Follower] = field(default_factory=list)
    _failures_seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.model, self.spec, self.engine = self.ctx.name, self.ctx.spec, self.ctx.warehouse
        self.landing = self.ctx.landing
        self.dag = {
            kind: f"{self.model}_{kind}" for kind in ("ingest", "score", "train", "monitor", "retrain")
        }

    # -- the year -------------------------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Replay up to ``until``; the monthly table."""
        started = time.monotonic()
        for kind in ("ingest", "score", "monitor", "retrain", "train"):
            self.api.wait_for_dag(self.dag[kind])
        for follower in self.followers:
            follower.start()
        # Without a champion a score run has nothing to do but skip: the score DAG is paused (as an operator
        # would) until the first champion exists; its first run then scores every validated partition.
        self.api.call("PATCH", f"/dags/{self.dag['score']}", is_paused=True)
        first = list(days(FIRST_DAY, min(FIRST_TRAINING_END, self.until)))
        self.report(f"landing {first[0]}..{first[-1]} ({len(first)} days) for the first champion")
        self._land(first)
        self._wait_ingested(first, timeout=60 + 10 * len(first))
        self._mark("January-February ingested", started)

        step = time.monotonic()
        run_id = self.api.trigger(self.dag["train"], {"window_end": first[-1].isoformat()})
        self._wait_run(self.dag["train"], run_id, timeout=900)
        self.first_champion = self._champion()
        if self.first_champion is None:
            raise DemoError(f"{self.dag['train']} run {run_id} promoted no champion: see the Airflow UI")
        self._mark(f"first champion v{self.first_champion} trained", step)
        self.api.call("PATCH", f"/dags/{self.dag['score']}", is_paused=False)

        self.weeks = plan_weeks(first[-1] + timedelta(days=1), self.until)
        if not self.weeks:
            return self.monthly_table()
        self._land(self.weeks[0].days)
        for index, week in enumerate(self.weeks):
            step = time.monotonic()
            self._wait_ingested(week.days, timeout=300)
            self._wait_scored(week.days, timeout=300)
            monitor_run = None
            retrain_runs = {r["dag_run_id"] for r in self.api.runs(self.dag["retrain"], limit=5)}
            if week.monitor_at is not None:
                monitor_run = self.api.trigger(self.dag["monitor"], logical_date=week.monitor_at)
            following = self.weeks[index + 1] if index + 1 < len(self.weeks) else None
            if following is not None:
                self._land(following.days)  # the next batches arrive while the monitor runs
            if monitor_run is not None:
                self._wait_run(self.dag["monitor"], monitor_run, timeout=600)
                week.monitoring = self._monitoring(week)
                if week.monitoring and week.monitoring["drifted"]:
                    week.retrain = self._wait_retrain(retrain_runs, timeout=1200)
            week.seconds = time.monotonic() - step
            self.report(self._week_line(week))
            for follower in self.followers:
                follower.advance()
        if self.followers:
            step = time.monotonic()
            wait_settled(self.followers, timeout=1200, alive=self.alive)
            self._mark("the chained models settled", step)
        self.timings["total"] = round(time.monotonic() - started, 1)
        return self.monthly_table()

    # -- steps ----------------------------------------------------------------------------------------------

    def _land(self, landed: list[date]) -> None:
        for day in landed:
            write_partition(day_frame(day), self.landing, day)

    def _wait_ingested(self, wanted: list[date], timeout: float) -> None:
        keys = {d.isoformat() for d in wanted}

        def done() -> bool:
            rows = {e.partition: e for e in ledger_entries(self.engine, self.model) if e.partition in keys}
            bad = [f"{p}: {e.reason}" for p, e in sorted(rows.items()) if not e.passed]
            if bad:
                raise DemoError(f"quarantined while replaying real 2013 data: {'; '.join(bad)}")
            return len(rows) == len(keys)

        self._until(done, timeout, f"ingestion of {min(keys)}..{max(keys)}", self.dag["ingest"])

    def _wait_scored(self, wanted: list[date], timeout: float) -> None:
        keys = sorted(d.isoformat() for d in wanted)
        table = predictions_of(self.ctx)

        def done() -> bool:
            return scored_partitions(self.engine, table, keys, CHAMPION) == set(keys)

        self._until(done, timeout, f"scoring of {min(keys)}..{max(keys)}", self.dag["score"])

    def _wait_run(self, dag_id: str, run_id: str, timeout: float) -> None:
        state = self.api.wait_for_run(dag_id, run_id, timeout=timeout)
        if state != "success":
            raise DemoError(f"{dag_id} run {run_id} ended {state}: see its logs in the Airflow UI")

    def _wait_retrain(self, known_runs: set[str], timeout: float) -> dict[str, Any]:
        """What the loop did about the drift just found: not due (cooldown), or the retrain's outcome once the
        drift event is handled, whichever retrain run handles it (one may wait in its sensor since an earlier
        event that was not due)."""
        choice = retrain_check(self.ctx, None)
        if not choice.due or choice.event is None:
            return {"outcome": "not due", "reasons": [choice.reason]}
        event_id = choice.event.id

        def settled() -> bool:
            if event_id not in {e.id for e in open_drift_events(self.engine, self.model)}:
                return True
            # Still open: a retrain that ran and failed leaves it so; anything else is still on its way.
            runs = [
                r for r in self.api.runs(self.dag["retrain"], limit=5) if r["dag_run_id"] not in known_runs
            ]
            return any(r["state"] in ("success", "failed") for r in runs)

        self._until(settled, timeout, "the retrain after drift", self.dag["retrain"])
        for event in events_of(self.engine, self.model, [EventKind.DRIFT_HANDLED]):
            if event.payload.drift_event_id == event_id:
                return event.payload.to_json()
        return {"outcome": "retrain failed", "reasons": ["see the retrain run in the Airflow UI"]}

    def _until(self, done: Callable[[], bool], timeout: float, what: str, dag_id: str) -> None:
        """Poll ``done`` (a cheap warehouse query) twice a second; every few seconds, report failed runs of
        ``dag_id`` and check the stack is up."""
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + CHECK_EVERY
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise DemoError(
                    f"{what} did not finish within {timeout:.0f} s: see {dag_id} in the Airflow UI"
                )
            if now >= next_check:
                next_check = now + CHECK_EVERY
                if not self.alive():
                    raise DemoError(f"a stack component stopped while waiting for {what}: see .airloop/logs")
                failed = self.api.runs(dag_id, state="failed", limit=1)
                if failed and failed[0]["dag_run_id"] not in self._failures_seen:
                    self._failures_seen.add(failed[0]["dag_run_id"])
                    self.report(
                        f"  ! {dag_id} run {failed[0]['dag_run_id']} failed (Airflow UI: its task logs)"
                    )
            time.sleep(POLL)

    def _champion(self) -> str | None:
        return self.ctx.registry.version_of(CHAMPION)

    def _monitoring(self, week: Week) -> dict[str, Any] | None:
        last = (week.monitor_at - timedelta(days=1)).date().isoformat() if week.monitor_at else None
        rows = [r for r in monitoring_history(self.engine, self.model, limit=5) if r["window_last"] == last]
        return rows[0] if rows else None

    def _mark(self, what: str, since: float) -> None:
        self.timings[what] = round(time.monotonic() - since, 1)
        self.report(f"{what} in {self.timings[what]:.0f} s")

    def _week_line(self, week: Week) -> str:
        days_of_week = {d.isoformat() for d in week.days}
        rows = sum(
            e.rows or 0 for e in ledger_entries(self.engine, self.model) if e.partition in days_of_week
        )
        line = f"week {week.label}  {rows:>5} rows"
        monitoring = week.monitoring
        if monitoring is None:
            return f"{line}  (part week: ingested and scored, not monitored)  {week.seconds:.0f} s"
        share = monitoring["drift_share"]
        drifted = (
            f"{monitoring['drifted_features']}/{monitoring['features']}" if monitoring["features"] else "-"
        )
        line += f"  drift share {share:.2f} ({drifted})" if share is not None else "  drift share -"
        auc, drop = monitoring["quality_current"], monitoring["quality_drop"]
        line += f"  AUC {auc:.3f}" if auc is not None else "  AUC -"
        line += f"  champion v{monitoring['champion_version']}"
        if monitoring["drifted"]:
            policy = self.spec.monitoring
            why = [
                *(["features"] if share is not None and share >= policy.drift_share else []),
                *(["quality"] if drop is not None and drop > policy.max_quality_drop else []),
            ] or ["predictions"]
            retrain = week.retrain or {}
            outcome = retrain.get("outcome", "?")
            line += f"  DRIFT ({', '.join(why)}) -> "
            if outcome == "promoted":
                line += f"retrained: v{retrain.get('version')} promoted"
            else:
                reason = (retrain.get("reasons") or [""])[0]
                line += outcome + (f": {reason[:80]}" if reason else "")
        return f"{line}  {week.seconds:.0f} s"

    # -- the table ------------------------------------------------------------------------------------------

    def monthly_table(self) -> list[dict[str, Any]]:
        """Per month after the first champion's training: rows, drift, retrains, serving versions and metric."""
        return model_months(self.ctx, self.first_champion, FIRST_TRAINING_END + timedelta(days=1), self.until)


def plan_weeks(start: date, until: date) -> list[Week]:
    """The weeks the replay lands from ``start`` to ``until``: the days up to each Saturday once a whole @weekly
    interval (Sunday to Saturday) is among them, monitored on the Sunday after; then a part week, not monitored."""
    weeks: list[Week] = []
    current: list[date] = []
    for day in days(start, until):
        current.append(day)
        if day.weekday() == 5 and len(current) >= 7:
            sunday = day + timedelta(days=1)
            weeks.append(Week(current, datetime(sunday.year, sunday.month, sunday.day, tzinfo=UTC)))
            current = []
    if current:
        weeks.append(Week(current))
    return weeks


def fresh_home(config: Settings, model: str) -> None:
    """Start the replay from nothing: clear a home a previous demo left, refuse one holding other data.

    A previous demo leaves ``<home>/.demo``; only such a home (or an empty one) is cleared, its passwords kept, so
    ``airloop demo`` never deletes what it did not make. A warehouse outside the home (``AIRLOOP_WAREHOUSE_URL``)
    that holds the model's batches is refused too.
    """
    home = config.home
    marker = home / ".demo"
    if marker.exists():
        for child in home.iterdir():
            if child.name not in {"passwords.json", ".demo"}:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif home.exists() and any(home.iterdir()):
        raise DemoError(
            f"{home} is not empty and was not made by `airloop demo`: point AIRLOOP_HOME at an empty folder"
        )
    engine = engine_for(config.warehouse_url)
    if sa.inspect(engine).has_table(ledger.name) and ledger_entries(engine, model):
        raise DemoError(
            f"the warehouse {engine.url!r} already holds {model} batches: the demo needs an empty one"
        )
    engine.dispose()
    home.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by `airloop demo`: the next demo clears this folder (passwords.json is kept)\n")
