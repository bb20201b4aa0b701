"""How long the closed loop takes on the real scheduler, step by step, against the same steps in one process.

The figure: from the landing of a drifted batch to the first prediction by the new champion. Measured twice, on
the same data, with the same library functions and the specs shrunk as ``tests/e2e`` shrinks them (28-day
training window, 5-day holdout, 3 Optuna trials, 3-day monitoring window, catchup off):

* **scheduler**: the local stack (:class:`airloop.local.stack.Stack`: LocalExecutor with preloaded libraries, metadata
  DB and warehouse in fresh PostgreSQL databases, the MLflow server), driven through the REST API like
  ``tests/e2e/test_loop_e2e.py``. Setup, not timed: February and 2013-06-23..07-17 written to the warehouse with
  their ledger rows, a first champion trained through ``<model>_train``, the seeded days scored through
  ``<model>_score``, and one backfill of ``<model>_ingest`` over 2013-07-18..21 whose four sensors then wait,
  deferred, for their partitions (as scheduled runs wait for an upstream delivery). Timed from t0: the drifted
  batch (07-18..20) lands; the sensors fire, the days are ingested and scored off the batches Asset; once all three
  are scored, a manual ``<model>_monitor`` run (logical date 2013-07-21) finds the drift and records it; the drift
  Asset starts ``<model>_retrain``, whose sensor and trigger run ``<model>_train`` (train, gate, promote); once
  the promotion task has succeeded, the next day (07-21) lands, is ingested and scored by the new champion.
  Every task instance's times come from ``GET /api/v2/dags/{dag}/dagRuns/{run}/taskInstances``.
* **in-process**: a fresh Python process calls what those tasks call (``airloop.ingest.landing.is_landed``,
  ``ingest.ingest.ingest_partition``, ``score.score.partitions_to_score``/``score_partitions`` (score_champion),
  ``monitor.monitor.monitor_window``/``record_drift``, ``retrain.retrain.champion_facts``/``retrain_check`` (the
  retrain sensor's check), ``train.train.train_challenger``, ``promote.promote.evaluate_gate``/``promote_challenger``,
  each on the model's :class:`airloop.model.context.ModelContext`), one after
  the other with the same arguments, against a warehouse database of its own and the same MLflow server, under a
  renamed copy of the spec (so the registered model is its own). It runs after the scheduler part, while the
  Airflow components sit idle. Its imports are timed apart and left out of its total: paid once per process, as the
  scheduler pays the third-party ones once when it preloads them before forking task processes (each task imports
  airloop's own modules itself). Its first champion is trained in
  the same process first (setup, not timed): both sides measure a warm loop.

Not on the critical path, so in neither total: the challenger's shadow scoring, the drift and retrain alerts, the
retrain DAG's outcome record and its trigger's wait for the training run. In the scheduler they run alongside, on
the same cores (listed under "off the critical path"); the in-process side does not run them.

The machine may be shared with other work, which slows both sides unevenly: the load average and, for each part,
the CPU seconds used by the stack, by the in-process run and by everything else on the machine are printed.

Run it (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; another server through ``AIRLOOP_TEST_PG``);
about 5-8 minutes on 2 cores::

    .venv/bin/python benchmarks/loop_latency.py          # progress on stderr, figures on stdout
    .venv/bin/python benchmarks/loop_latency.py --celery # the scheduler side again on the Celery profile (2 workers,
                                                         # the machine's Redis), printed beside the local one
    .venv/bin/python benchmarks/loop_latency.py --keep   # keep the temporary folder (logs) and the databases
    .venv/bin/python benchmarks/loop_latency.py --report-from /tmp/airloop-loop-latency-*/measurements.json

What it prints (seconds; t0 = the drifted batch starts landing):

* **scheduler critical path**: the chain of steps that decided when the first new prediction came, traced back
  from it (the three drifted days are ingested in parallel; the path goes through the day whose data the last
  score run waited for). ``sched``, ``queued``, ``start``, ``end``: the task instance's ``scheduled_when``,
  ``queued_when``, ``start_date``, ``end_date`` after t0; ``run`` = end - start; ``gap`` = start - end of the
  previous step, split into ``driver`` (this benchmark noticing the previous step, then calling the REST API or
  landing files), ``trigger`` (a deferred sensor's trigger noticing the landing), ``retry`` (a step that needed a
  second try: the failed try and the retry delay, up to the last try's ``scheduled_when``), ``sched.`` (the
  scheduler: dependencies met, Asset event, trigger or a run ahead in line -> queued) and ``q->run`` (queued ->
  running: the executor picking the task up, starting its process). A sensor resumed from deferral keeps its first
  ``start_date``, so its resumed execution is inside ``q->run`` and its ``run`` shows "-". ``in-proc`` is the same
  step's time in the in-process run ("-" for pure orchestration steps).
* **off the critical path**: the other task instances of those runs (in parallel, or skipped), and the earlier
  tries of retried ones.
* **in-process timeline**: each call's start and end after t0, and its duration.
* **phases**: the four stretches of the loop (drifted batch scored, drift recorded, new champion, next batch
  scored) on both sides, and their ratio.
* **totals**: both totals, the ratio scheduler / in-process (also with the in-process imports counted), and how
  the scheduler total splits into steps running and gaps.
* **CPU**: for each part, the CPU seconds of the Airflow components with their task processes, of the MLflow
  server, of this benchmark and its in-process child (imports and setup included), of the PostgreSQL server
  (which may serve others too) and of other work on the machine; then the CPU seconds of the loop itself on each
  side.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from _procs import tree_cpu

from airloop.airflow.preload import PRELOAD

MODEL = "flights_delay"
#: The in-process run's copy of the spec: its own registered model, tables and landing folder.
IN_PROCESS_MODEL = f"{MODEL}_inprocess"
INGEST, SCORE, TRAIN, MONITOR, RETRAIN = (
    f"{MODEL}_{k}" for k in ("ingest", "score", "train", "monitor", "retrain")
)

FIRST_WINDOW = (date(2013, 2, 1), date(2013, 2, 28))  # the first champion's training window
RECENT = (date(2013, 6, 23), date(2013, 7, 17))  # validated days before the drift (the retrain's window)
DRIFTED = [date(2013, 7, 18), date(2013, 7, 19), date(2013, 7, 20)]
NEXT = date(2013, 7, 21)
#: A manual run of the @weekly monitor at this logical date covers [07-14, 07-21): with a 3-day window, DRIFTED.
MONITOR_LOGICAL = datetime(2013, 7, 21, tzinfo=UTC)
PHASES = ("drifted batch scored", "drift recorded", "new champion", "next batch scored")
LAND_DRIFTED = "land drifted batch (benchmark)"
LAND_NEXT = f"{NEXT} land batch (benchmark)"
#: Steps that call no library function of their own (the trigger of the train DAG).
ORCHESTRATION = ("retrain.retrain",)

#: What the loop's library calls import: the warm executor's preload list (airloop.airflow.preload, third-party
#: libraries only) and airloop's stage modules, which the tasks import themselves. Timed apart in the in-process run.
HEAVY_IMPORTS = (
    *PRELOAD,
    "airloop.ingest.ingest",
    "airloop.train.train",
    "airloop.promote.promote",
    "airloop.score.score",
    "airloop.monitor.monitor",
    "airloop.retrain.retrain",
)

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("AIRLOOP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
POLL = 0.5
#: Task states after which a promotion attempt is over.
PROMOTION_DONE = {"success", "skipped", "failed", "upstream_failed"}


@dataclass
class Step:
    """One step of the scheduler's critical path, in seconds after t0."""

    key: str
    phase: str
    start: float
    end: float
    scheduled: float | None = None
    queued: float | None = None
    #: When the benchmark acted just before this step (a REST call; the start of a landing).
    driver_at: float | None = None
    #: A sensor resumed from deferral: ``start`` is its first start, before what it waited for.
    resumed: bool = False
    #: A later try: the failed tries and the retry delay are in the gap before it.
    retried: bool = False

    @property
    def run(self) -> float:
        return 0.0 if self.resumed else self.end - self.start

    @property
    def orchestration(self) -> bool:
        return any(self.key.endswith(name) or name + " " in self.key for name in ORCHESTRATION)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and the databases")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report-from", type=Path, help="print the report of a kept measurements.json again")
    parser.add_argument(
        "--celery", action="store_true", help="also measure the scheduler side on the Celery profile (Redis)"
    )
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(run_in_process()))
        return
    if args.report_from:
        _report(**json.loads(args.report_from.read_text()))
        return
    run_benchmark(keep=args.keep, celery=args.celery)


# --- the scheduler side -------------------------------------------------------------------------------------


def run_benchmark(*, keep: bool, celery: bool = False) -> None:
    import sqlalchemy as sa

    from airloop.core.settings import load_settings
    from airloop.local.stack import Stack

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="airloop-loop-latency-"))
    prefix = f"airloop_bench_{uuid.uuid4().hex[:10]}"
    roles = ("airflow", "warehouse", "inprocess") + (("celery_airflow", "celery_warehouse") if celery else ())
    databases = {role: f"{prefix}_{role}" for role in roles}
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    urls = {role: f"{server}/{name}" for role, name in databases.items()}
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    stack = None
    try:
        with admin.connect() as conn:
            for name in databases.values():
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        base = _base_env(
            work / "home",
            AIRLOOP_MODELS_DIR=str(_shrunk_specs(work / "models", MODEL)),
            AIRLOOP_WAREHOUSE_URL=urls["warehouse"],
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=urls["airflow"],
        )
        settings = load_settings(env=base)
        inprocess_settings = load_settings(
            env={
                **base,
                "AIRLOOP_HOME": str(work / "inprocess"),
                "AIRLOOP_MODELS_DIR": str(_shrunk_specs(work / "inprocess-models", IN_PROCESS_MODEL)),
                "AIRLOOP_WAREHOUSE_URL": urls["inprocess"],
            }
        )
        _say("seeding both warehouses with 2013-02 and 2013-06-23..07-17 (validated, with ledger rows)")
        for config, model in ((settings, MODEL), (inprocess_settings, IN_PROCESS_MODEL)):
            _seed(config, model)

        stack = Stack(settings, base_env=base, report=lambda line: _say(f"[stack] {line}"))
        sched, cpu = _measure_stack(stack, settings, base["AIRLOOP_PASSWORD_ADMIN"])

        _say("in-process part: a fresh Python process; the Airflow components idle meanwhile")
        before = cpu()
        inproc = _run_child(_child_env(stack.env, inprocess_settings))
        inproc["cpu"] = [before, cpu()]
        measured = {
            "sched": sched,
            "inproc": inproc,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "omp_threads": stack.env.get("OMP_NUM_THREADS", "unset"),
        }
        if celery:
            stack.stop()
            stack = None
            measured["celery"] = _celery_loop(work, urls, f"{prefix}_")
        (work / "measurements.json").write_text(json.dumps(measured, indent=1))
        _report(**measured)
    finally:
        if stack is not None:
            stack.stop()
        if keep:
            _say(f"kept {work} and the databases {', '.join(databases.values())}")
        else:
            with admin.connect() as conn:
                for name in databases.values():
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            shutil.rmtree(work, ignore_errors=True)
        admin.dispose()


def _celery_loop(work: Path, urls: dict[str, str], key_prefix: str) -> dict[str, Any]:
    """The same scheduler side on the Celery profile: two workers on the machine's Redis (keys under
    ``key_prefix``, deleted after), PostgreSQL for the metadata and a warehouse of its own."""
    import redis

    from airloop.core.settings import load_settings
    from airloop.local.stack import Stack

    base = _base_env(
        work / "celery-home",
        AIRLOOP_MODELS_DIR=str(_shrunk_specs(work / "celery-models", MODEL)),
        AIRLOOP_WAREHOUSE_URL=urls["celery_warehouse"],
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=urls["celery_airflow"],
        AIRLOOP_EXECUTOR="celery",
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX=key_prefix,
    )
    settings = load_settings(env=base)
    _say("Celery profile: seeding its warehouse, starting its stack (2 workers)")
    _seed(settings, MODEL)
    stack = Stack(settings, base_env=base, report=lambda line: _say(f"[celery stack] {line}"))
    broker = redis.Redis.from_url(settings.celery_broker_url)
    try:
        return _measure_stack(stack, settings, base["AIRLOOP_PASSWORD_ADMIN"])[0]
    finally:
        stack.stop()
        keys = list(broker.scan_iter(f"{key_prefix}*"))
        if keys:
            broker.delete(*keys)
        broker.close()


def _measure_stack(
    stack: Any, settings: Any, password: str
) -> tuple[dict[str, Any], Callable[[], dict[str, float]]]:
    """Start ``stack`` and measure its scheduler side (setup, then the loop); with the CPU snapshot of its
    processes (Airflow's, MLflow's), for what runs after."""
    from airloop.local.demo.driver import AirflowApi

    stack.start()
    api = AirflowApi(stack.airflow_url, "admin", password)
    try:
        setup = {"stack healthy": stack.startup_seconds or 0.0, **_scheduler_setup(api)}
        pids = stack.pids()

        def cpu() -> dict[str, float]:
            return _cpu_snapshot([pid for name, pid in pids.items() if name != "mlflow"], [pids["mlflow"]])

        return {**_scheduler_loop(api, settings, cpu), "setup": setup}, cpu
    finally:
        api.close()


def _scheduler_setup(api: Any) -> dict[str, float]:
    """DAGs parsed, first champion, seeded days scored, the ingest runs waiting for their partitions."""
    for dag_id in (INGEST, SCORE, TRAIN, MONITOR, RETRAIN):
        api.wait_for_dag(dag_id, timeout=180)
    took: dict[str, float] = {}
    started = time.monotonic()
    run_id = api.trigger(TRAIN, conf={"window_end": FIRST_WINDOW[1].isoformat()})
    _expect(api.wait_for_run(TRAIN, run_id, timeout=600) == "success", f"first training {run_id} failed")
    first = _tis(api, TRAIN, run_id)
    _expect(first["promote_champion"]["state"] == "success", "the first champion was not promoted")
    took["first champion (train run)"] = time.monotonic() - started
    took["  of which train_challenger"] = first["train_challenger"]["duration"]
    _say(f"first champion trained and promoted through {TRAIN} in {took['first champion (train run)']:.1f} s")

    started = time.monotonic()
    run_id = api.trigger(SCORE)
    _expect(
        api.wait_for_run(SCORE, run_id, timeout=300) == "success", f"scoring the seeded days failed: {run_id}"
    )
    took["seeded days scored (score run)"] = time.monotonic() - started

    started = time.monotonic()
    day = [datetime(d.year, d.month, d.day, tzinfo=UTC).isoformat() for d in (DRIFTED[0], NEXT)]
    api.call("POST", "/backfills", dag_id=INGEST, from_date=day[0], to_date=day[1])
    _wait_for(lambda: _sensors_deferred(api), "the four ingest sensors to defer", 240)
    took["ingest runs created, sensors deferred"] = time.monotonic() - started
    _say("ingest runs for 07-18..21 wait, deferred, for their partitions")
    return took


def _scheduler_loop(api: Any, settings: Any, cpu: Callable[[], dict[str, float]]) -> dict[str, Any]:
    """The measured loop; returns what was measured (the task instances, the benchmark's own marks, the runs)."""
    from airloop.local.demo.replay import day_frame, write_partition
    from airloop.model.context import ModelContext
    from airloop.model.predictions import predictions_of

    ctx = ModelContext.load(MODEL, settings)
    engine = ctx.warehouse
    table = predictions_of(ctx)
    landing = ctx.landing
    frames = {day: day_frame(day) for day in [*DRIFTED, NEXT]}
    champion_before = _champion_versions(engine, table, [RECENT[1]])
    marks: dict[str, datetime] = {}

    _say(f"landing the drifted batch {DRIFTED[0]}..{DRIFTED[-1]} (t0)")
    cpu_at_t0 = cpu()
    t0 = datetime.now(UTC)
    for day in DRIFTED:
        write_partition(frames[day], landing, day)
    marks["landed drifted"] = datetime.now(UTC)
    for day in DRIFTED:
        _wait_scored(engine, table, day)
    _say(f"  drifted batch scored at +{_since(t0):.1f} s")
    marks["monitor"] = datetime.now(UTC)
    monitor_run = api.call(
        "POST", f"/dags/{MONITOR}/dagRuns", logical_date=MONITOR_LOGICAL.isoformat(), conf={}
    )["dag_run_id"]
    retrain_run = _wait_for(
        lambda: _retrain_started(api, monitor_run, t0), "a retrain run off the drift Asset"
    )
    _say(f"  drift recorded; {RETRAIN} run started at +{_since(t0):.1f} s")
    train_run = f"retrain__{retrain_run}"
    promotion = _wait_for(lambda: _promotion_state(api, train_run), f"the promotion task of {train_run}", 600)
    _say(f"  promote_champion {promotion} at +{_since(t0):.1f} s")

    marks["land next"] = datetime.now(UTC)
    write_partition(frames[NEXT], landing, NEXT)
    marks["landed next"] = datetime.now(UTC)
    versions = _wait_scored(engine, table, NEXT)
    cpu_at_end = cpu()
    _say(f"  {NEXT} scored by v{'/'.join(sorted(versions))} at +{_since(t0):.1f} s")

    ingest_runs = _ingest_runs(api)
    runs = {
        INGEST: list(ingest_runs.values()),
        SCORE: _new_runs(api, SCORE, t0),
        MONITOR: [monitor_run],
        RETRAIN: [retrain_run],
        TRAIN: [train_run],
    }
    for dag_id, run_ids in runs.items():
        for run_id in run_ids:
            api.wait_for_run(dag_id, run_id, timeout=300)
    tis = [
        ti
        for dag_id, run_ids in runs.items()
        for run_id in run_ids
        for ti in _tis(api, dag_id, run_id).values()
    ]
    return {
        "t0": t0.isoformat(),
        "marks": {name: at.isoformat() for name, at in marks.items()},
        "ingest_runs": {day.isoformat(): run_id for day, run_id in ingest_runs.items()},
        "score_runs": [api.call("GET", f"/dags/{SCORE}/dagRuns/{run_id}") for run_id in runs[SCORE]],
        "partitions": {run_id: _scored_partitions(api, run_id) for run_id in runs[SCORE]},
        "monitor_run": monitor_run,
        "retrain_run": retrain_run,
        "train": api.call("GET", f"/dags/{TRAIN}/dagRuns/{train_run}"),
        "tis": tis,
        "earlier_tries": [t for ti in tis if ti["try_number"] > 1 for t in _earlier_tries(api, ti)],
        "promotion": promotion,
        "versions": {"before": sorted(champion_before), "after": sorted(versions)},
        "cpu": [cpu_at_t0, cpu_at_end],
    }


def _analyse(raw: dict[str, Any]) -> tuple[list[Step], list[dict[str, Any]]]:
    """The critical path of a scheduler run, and the other task instances (earlier tries included)."""
    t0 = datetime.fromisoformat(raw["t0"])
    tis: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for ti in raw["tis"]:
        tis.setdefault((ti["dag_id"], ti["dag_run_id"]), {})[ti["task_id"]] = ti
    path = _CriticalPath(
        tis=tis,
        t0=t0,
        marks={name: datetime.fromisoformat(at) for name, at in raw["marks"].items()},
        ingest_runs={date.fromisoformat(day): run_id for day, run_id in raw["ingest_runs"].items()},
        score_runs=raw["score_runs"],
        partitions={run_id: [date.fromisoformat(p) for p in ps] for run_id, ps in raw["partitions"].items()},
    )
    chain = path.build(raw["monitor_run"], raw["retrain_run"], raw["train"])
    others = [ti for ti in raw["tis"] if (ti["dag_id"], ti["dag_run_id"], ti["task_id"]) not in path.used]
    others = [
        {**ti, "rel_start": _rel(ti["start_date"], t0), "rel_end": _rel(ti["end_date"], t0)}
        for ti in [*others, *raw["earlier_tries"]]
    ]
    others.sort(key=lambda ti: (ti["rel_start"] is None, ti["rel_start"] or 0.0, ti["task_id"]))
    return chain, others


@dataclass
class _CriticalPath:
    """Traces back, from the first prediction for the next batch, the steps that each next one waited for."""

    tis: dict[tuple[str, str], dict[str, dict[str, Any]]]
    t0: datetime
    marks: dict[str, datetime]
    ingest_runs: dict[date, str]
    score_runs: list[dict[str, Any]]
    #: The partitions each score run scored.
    partitions: dict[str, list[date]]

    def __post_init__(self) -> None:
        self.used: set[tuple[str, str, str]] = set()
        self.runs_in_order = [r["dag_run_id"] for r in self.score_runs]

    def build(self, monitor_run: str, retrain_run: str, train: dict[str, Any]) -> list[Step]:
        # The run that first scored each day (a later run can score a day again: see _scored_partitions).
        first = {
            day: next(r for r in self.runs_in_order if day in self.partitions[r]) for day in [*DRIFTED, NEXT]
        }
        last = max((first[day] for day in DRIFTED), key=lambda r: self._end(SCORE, r, "score_champion"))
        landed = self._at("landed drifted")
        chain = [Step(LAND_DRIFTED, PHASES[0], 0.0, landed, driver_at=0.0)]
        chain += self._score(last, PHASES[0], DRIFTED, landed)
        chain += self._step(
            MONITOR,
            monitor_run,
            "monitor_window",
            "monitor.monitor_window",
            PHASES[1],
            driver_at=self._at("monitor"),
        )
        chain += self._step(RETRAIN, retrain_run, "wait_for_drift", "retrain.wait_for_drift", PHASES[2])
        # The trigger task then waits, deferred, for the whole training run: on the path until the run exists.
        created = _rel(train["queued_at"] or train["run_after"], self.t0)
        key = "retrain.retrain (until the train run exists)"
        chain += self._step(RETRAIN, retrain_run, "retrain", key, PHASES[2], end=created)
        for task_id in ("train_challenger", "evaluate_gate", "promote_champion"):
            chain += self._step(TRAIN, train["dag_run_id"], task_id, f"train.{task_id}", PHASES[2])
        start, landed = self._at("land next"), self._at("landed next")
        chain.append(Step(LAND_NEXT, PHASES[3], start, landed, driver_at=start))
        chain += self._score(first[NEXT], PHASES[3], [NEXT], landed)
        return chain

    def _score(self, run_id: str, phase: str, days: list[date], landed: float) -> list[Step]:
        """A score run's path, after what held it up last: the load of one of its days or the run before it."""
        begin = self._start(SCORE, run_id, "score_champion")
        waited = [
            (self._end(INGEST, self.ingest_runs[day], "ingest_batch"), "ingest", day)
            for day in self.partitions[run_id]
            if day in days
        ]
        # max_active_runs=1: a run can also wait for the one before it to finish.
        order = self.runs_in_order
        before = order[order.index(run_id) - 1] if order.index(run_id) > 0 else None
        if before and set(self.partitions[before]) & set(days):
            run_end = _rel(self.score_runs[order.index(before)]["end_date"], self.t0)
            waited.append((run_end, "score", before))
        # A load can commit before its task instance ends: then the run started before that end (the gap is 0).
        done = [w for w in waited if w[0] <= begin]
        _end, kind, what = max(done, key=lambda w: w[0]) if done else min(waited, key=lambda w: w[0])
        prefix = (
            self._ingest(what, phase, landed) if kind == "ingest" else self._score(what, phase, days, landed)
        )
        mine = sorted(set(self.partitions[run_id]) & set(days))
        label = str(mine[0]) if len(mine) == 1 else f"{mine[0]}..{mine[-1]}"
        return prefix + self._step(SCORE, run_id, "score_champion", f"{label} score.score_champion", phase)

    def _ingest(self, day: date, phase: str, landed: float) -> list[Step]:
        run_id = self.ingest_runs[day]
        tasks = ("wait_for_partition", "ingest_batch")
        return [
            s for t in tasks for s in self._step(INGEST, run_id, t, f"{day} ingest.{t}", phase, landed=landed)
        ]

    def _step(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        key: str,
        phase: str,
        *,
        driver_at: float | None = None,
        end: float | None = None,
        landed: float | None = None,
    ) -> list[Step]:
        """The task instance as a step; none when it did not run (skipped, or not in the DAG version of its run:
        the DAG files may change between runs)."""
        ti = self.tis[(dag_id, run_id)].get(task_id)
        if ti is None or ti["start_date"] is None or ti["end_date"] is None:
            return []
        self.used.add((dag_id, run_id, task_id))
        start = _rel(ti["start_date"], self.t0)
        end = end if end is not None else _rel(ti["end_date"], self.t0)
        scheduled, queued = _rel(ti["scheduled_when"], self.t0), _rel(ti["queued_when"], self.t0)
        if queued is not None and queued > end:  # queued again after it left the path (the trigger's resume)
            scheduled = queued = None
        retried = ti["try_number"] > 1
        step = Step(
            key=key + (f" (try {ti['try_number']})" if retried else ""),
            phase=phase,
            start=start,
            end=end,
            scheduled=scheduled,
            queued=queued,
            driver_at=driver_at,
            resumed=landed is not None and start < landed,
            retried=retried,
        )
        return [step]

    def _start(self, dag_id: str, run_id: str, task_id: str) -> float:
        return _rel(self.tis[(dag_id, run_id)][task_id]["start_date"], self.t0)

    def _end(self, dag_id: str, run_id: str, task_id: str) -> float:
        return _rel(self.tis[(dag_id, run_id)][task_id]["end_date"], self.t0)

    def _at(self, mark: str) -> float:
        return _rel_dt(self.marks[mark], self.t0)


def _sensors_deferred(api: Any) -> bool:
    runs = _ingest_runs(api)
    if len(runs) < len(DRIFTED) + 1:
        return False
    return all(
        _tis(api, INGEST, run_id)["wait_for_partition"]["state"] == "deferred" for run_id in runs.values()
    )


def _ingest_runs(api: Any) -> dict[date, str]:
    """The ingest runs of the drifted days and the next one, by day."""
    runs = api.call("GET", f"/dags/{INGEST}/dagRuns")["dag_runs"]
    by_day = {
        date.fromisoformat(r["logical_date"][:10]): str(r["dag_run_id"]) for r in runs if r["logical_date"]
    }
    return {day: by_day[day] for day in [*DRIFTED, NEXT] if day in by_day}


def _new_runs(api: Any, dag_id: str, since: datetime) -> list[str]:
    """Runs of ``dag_id`` queued after ``since``, oldest first."""
    runs = api.call("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
    fresh = [r for r in runs if r["queued_at"] and datetime.fromisoformat(r["queued_at"]) >= since]
    return [str(r["dag_run_id"]) for r in sorted(fresh, key=lambda r: r["queued_at"])]


def _retrain_started(api: Any, monitor_run: str, t0: datetime) -> str | None:
    """The retrain run the drift Asset started; stops the benchmark when the monitor run ended without drift."""
    if started := _new_runs(api, RETRAIN, t0):
        return started[0]
    if api.call("GET", f"/dags/{MONITOR}/dagRuns/{monitor_run}")["state"] in ("success", "failed"):
        states = {t: ti["state"] for t, ti in _tis(api, MONITOR, monitor_run).items()}
        if states.get("alert_drift") not in ("success", "failed", "upstream_failed"):
            raise SystemExit(f"the monitor run recorded no drift: {states}")
    return None


def _promotion_state(api: Any, train_run: str) -> str | None:
    response = api.client.get(f"/api/v2/dags/{TRAIN}/dagRuns/{train_run}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    tis = _tis(api, TRAIN, train_run)
    if response.json()["state"] == "failed":
        raise SystemExit(f"{TRAIN} run {train_run} failed: { {t: ti['state'] for t, ti in tis.items()} }")
    state = tis.get("promote_champion", {}).get("state")
    return state if state in PROMOTION_DONE else None


def _scored_partitions(api: Any, run_id: str) -> list[str]:
    """The partitions a score run scored (score_champion's XCom ``partitions``); a partition named by an Asset event that
    arrived after an earlier run had been queued is scored again by the next run."""
    response = api.client.get(
        f"/api/v2/dags/{SCORE}/dagRuns/{run_id}/taskInstances/score_champion/xcomEntries/partitions",
        params={"deserialize": True},
    )
    response.raise_for_status()
    value = response.json()["value"]
    return list(json.loads(value) if isinstance(value, str) else value)


def _tis(api: Any, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    tis = api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti for ti in tis}


def _earlier_tries(api: Any, ti: dict[str, Any]) -> list[dict[str, Any]]:
    """The tries of a retried task instance before its last."""
    tries = api.call(
        "GET", f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/tries"
    )
    return [t for t in tries["task_instances"] if t["try_number"] < ti["try_number"]]


def _wait_scored(engine: Any, table: Any, day: date, timeout: float = 300) -> set[str]:
    """Wait until the champion's predictions for ``day`` are in the warehouse; the versions that made them."""
    return _wait_for(
        lambda: _champion_versions(engine, table, [day]) or None, f"predictions for {day}", timeout
    )


def _champion_versions(engine: Any, table: Any, days: list[date]) -> set[str]:
    import sqlalchemy as sa

    query = (
        sa.select(table.c.version)
        .where(table.c.alias == "champion", table.c.partition.in_([d.isoformat() for d in days]))
        .distinct()
    )
    with engine.connect() as conn:
        return {str(v) for (v,) in conn.execute(query)}


def _wait_for(probe: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)
    return found


# --- the in-process side ------------------------------------------------------------------------------------


def run_in_process() -> dict[str, Any]:
    """The same steps in this (fresh) process; settings from the ``AIRLOOP_*`` environment the parent set."""
    imports: dict[str, float] = {}
    for name in HEAVY_IMPORTS:
        started = time.perf_counter()
        importlib.import_module(name)
        imports[name] = time.perf_counter() - started

    from airloop.core.settings import settings
    from airloop.ingest.ingest import ingest_partition
    from airloop.ingest.landing import is_landed
    from airloop.local.demo.replay import day_frame, write_partition
    from airloop.model.context import ModelContext
    from airloop.model.registry import CHAMPION
    from airloop.monitor.monitor import monitor_window, record_drift
    from airloop.promote.promote import evaluate_gate, promote_challenger
    from airloop.retrain.retrain import champion_facts, retrain_check
    from airloop.score.score import partitions_to_score, score_partitions, unscored_partitions
    from airloop.train.train import train_challenger

    ctx = ModelContext.load(IN_PROCESS_MODEL, settings())
    run = "loop_latency in-process"
    landing = ctx.landing

    started = time.perf_counter()
    trained = train_challenger(ctx, window_end=FIRST_WINDOW[1].isoformat())
    gate = evaluate_gate(ctx, trained, airflow_run_id=run)
    first = promote_challenger(ctx, gate, airflow_run_id=run)
    _expect(first.promoted, f"the first in-process champion was not promoted: {first}")
    setup = {
        "first champion": time.perf_counter() - started,
        "  of which train_challenger": trained.seconds,
    }
    started = time.perf_counter()
    score_partitions(ctx, unscored_partitions(ctx), run_id=run)
    setup["seeded days scored"] = time.perf_counter() - started
    frames = {day: day_frame(day) for day in [*DRIFTED, NEXT]}

    t0, cpu_t0 = time.perf_counter(), time.process_time()
    steps: list[dict[str, Any]] = []

    @contextmanager
    def step(key: str, phase: str) -> Iterator[None]:
        began = time.perf_counter() - t0
        yield
        steps.append({"key": key, "phase": phase, "start": began, "end": time.perf_counter() - t0})

    def batch(day: date, phase: str) -> set[str]:
        partition = day.isoformat()
        with step(f"{day} ingest.wait_for_partition", phase):
            _expect(is_landed(landing, partition), f"{partition} has not landed")
        with step(f"{day} ingest.ingest_batch", phase):
            verdict, loaded = ingest_partition(ctx, partition, run_id=run)
            _expect(loaded is not None, f"{partition} failed validation: {verdict.reason}")
        with step(f"{day} score.score_champion", phase):
            event = {"partition": loaded.partition, "rows": loaded.rows}
            partitions = partitions_to_score([event], None, unscored_partitions(ctx))
            scored = score_partitions(ctx, partitions, alias=CHAMPION, run_id=run)
        _expect(scored.scored, f"{partition} not scored: {scored}")
        return {str(scored.version)}

    with step(LAND_DRIFTED, PHASES[0]):
        for day in DRIFTED:
            write_partition(frames[day], landing, day)
    for day in DRIFTED:
        batch(day, PHASES[0])
    with step("monitor.monitor_window", PHASES[1]):
        result = monitor_window(ctx, MONITOR_LOGICAL)
        _expect(result.monitored and result.drifted, f"no drift found: {result.reasons}")
        record_drift(ctx, result, airflow_run_id=run)
    with step("retrain.wait_for_drift", PHASES[2]):  # what DriftEventSensor checks before it would defer
        champion = champion_facts(ctx)
        due = retrain_check(ctx, champion).payload()
    _expect(due is not None, "no retrain due")
    with step("train.train_challenger", PHASES[2]):
        trained = train_challenger(ctx, window_end=due.partition, warm_start=True)
    with step("train.evaluate_gate", PHASES[2]):
        gate = evaluate_gate(ctx, trained, airflow_run_id=run)
        passed = gate.promote or gate.approval_required
    promotion = "skipped"
    if passed:
        with step("train.promote_champion", PHASES[2]):
            promoted = promote_challenger(ctx, gate, airflow_run_id=run)
        promotion = "success" if promoted.promoted else "skipped"
    with step(LAND_NEXT, PHASES[3]):
        write_partition(frames[NEXT], landing, NEXT)
    versions = batch(NEXT, PHASES[3])
    return {
        "loop_cpu": time.process_time() - cpu_t0,
        "imports": imports,
        "setup": setup,
        "steps": steps,
        "promotion": promotion,
        "versions": {"before": [first.version], "after": sorted(versions)},
        "drift_share": result.drift.share if result.drift else None,
    }


def _run_child(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--in-process"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the in-process run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_env(task_env: dict[str, str], config: Any) -> dict[str, str]:
    """The task processes' environment without Airflow's settings, pointed at the in-process settings."""
    env = {k: v for k, v in task_env.items() if not k.startswith("AIRFLOW")}
    for item in fields(config):
        env[f"AIRLOOP_{item.name.upper()}"] = str(getattr(config, item.name))
    return env


# --- setup helpers ------------------------------------------------------------------------------------------


def _base_env(home: Path, **overrides: str) -> dict[str, str]:
    """This process's environment minus any Airflow/airloop settings, on free ports (as the e2e conftest does)."""
    from airloop.local.env import isolated_env

    return isolated_env(home, ROOT, **overrides)


def _shrunk_specs(target: Path, name: str) -> Path:
    """The shipped spec of :data:`MODEL` shrunk as the e2e tests shrink it, saved as model ``name``.

    The ingest sensors wait 30 minutes here (2 in the e2e tests): the next day's run waits through the retrain.
    """
    import yaml

    target.mkdir(parents=True)
    raw = yaml.safe_load((ROOT / "config" / "models" / f"{MODEL}.yaml").read_text())
    raw["name"] = name
    raw["catchup"] = False
    raw["source"].update(poke_interval_seconds=2, wait_timeout_minutes=30)
    raw["training"].update(window_days=28, holdout_days=5)
    raw["training"]["search"].update(trials=3, retrain_trials=1, timeout_minutes=2)
    raw["monitoring"].update(window_days=3)
    # The drift path only: with an age cap the retrain DAG would also run on the wall clock's schedule.
    raw["monitoring"].pop("max_champion_age_days", None)
    (target / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return target


def _seed(config: Any, model: str) -> None:
    """Write the training days straight to the warehouse with their ledger rows, as the e2e test does."""
    from airloop.local.demo.replay import day_frame, days
    from airloop.model.context import ModelContext
    from airloop.store.db import sync_table
    from airloop.store.ledger import PASSED, LedgerEntry, replace_partition
    from airloop.store.schema import batches_table

    ctx = ModelContext.load(model, config)
    sync_table(ctx.warehouse, batches_table(ctx.spec))
    for day in [*days(*FIRST_WINDOW), *days(*RECENT)]:
        frame = day_frame(day)
        checksum = hashlib.sha256(f"loop-latency-seed:{day}:{len(frame)}".encode()).hexdigest()
        entry = LedgerEntry(partition=day.isoformat(), status=PASSED, checksum=checksum)
        replace_partition(ctx.warehouse, ctx.spec, frame, entry)


def _cpu_snapshot(airflow: list[int], mlflow: list[int]) -> dict[str, float]:
    """CPU seconds used so far: by the whole machine, the Airflow components, MLflow, this process (with the
    children it has waited for: the in-process run) and the PostgreSQL server (all its databases)."""
    import psutil

    t = psutil.cpu_times()
    own = os.times()
    postgres = [p.pid for p in psutil.process_iter(["name", "ppid"]) if p.info["name"] == "postgres"]
    return {
        "at": time.monotonic(),
        "machine": t.user + t.nice + t.system + t.irq + t.softirq + t.steal,
        "airflow": tree_cpu(airflow),
        "mlflow": tree_cpu(mlflow),
        "benchmark": own.user + own.system + own.children_user + own.children_system,
        # The server's backends and the exited ones its postmaster waited for; it serves other users too.
        "postgres": tree_cpu(postgres, descendants=False),
    }


# --- the report ---------------------------------------------------------------------------------------------


def _report(
    sched: dict[str, Any],
    inproc: dict[str, Any],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    omp_threads: str,
    celery: dict[str, Any] | None = None,
) -> None:
    chain, others = _analyse(sched)
    rows = _gaps(chain)
    steps = {s["key"]: s for s in inproc["steps"]}
    sched_total = chain[-1].end
    in_total = inproc["steps"][-1]["end"]
    in_steps = sum(s["end"] - s["start"] for s in inproc["steps"])
    imports = sum(inproc["imports"].values())

    print(
        f"loop latency of {MODEL}: drifted batch {DRIFTED[0]}..{DRIFTED[-1]} lands (t0) -> first prediction for "
        f"{NEXT} by the new champion"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {_load(load_before)} before, {_load(load_after)} after "
        f"(shared with other work); OMP_NUM_THREADS {omp_threads} on both sides (the stack's task setting)"
    )
    print("setup, not timed: scheduler " + _pairs(sched["setup"]) + "; in-process " + _pairs(inproc["setup"]))
    print(
        f"outcome: scheduler promote_champion {sched['promotion']}, champion v{'/'.join(sched['versions']['before'])}"
        f" -> v{'/'.join(sched['versions']['after'])}; in-process promotion {inproc['promotion']}, "
        f"v{'/'.join(inproc['versions']['before'])} -> v{'/'.join(inproc['versions']['after'])}; "
        f"drift share {inproc['drift_share']:.2f}"
    )
    scored: set[str] = set()
    for n, run in enumerate(sched["score_runs"], 1):
        partitions = sched["partitions"][run["dag_run_id"]]
        if again := sorted(scored & set(partitions)):
            print(
                f"note: the scheduler's score run {n} of {len(sched['score_runs'])} scored {', '.join(again)} again "
                "(named by an Asset event that arrived after an earlier run had been queued)"
            )
        scored |= set(partitions)

    print(
        f"\nscheduler critical path (s after t0 = {sched['t0'][:19]}); gap = driver + trigger + retry + sched. + q->run"
    )
    print(
        f"  {'step':46} {'sched':>6} {'queued':>6} {'start':>6} {'end':>6} {'run':>6} {'gap':>5} {'driver':>6}"
        f" {'trigger':>7} {'retry':>6} {'sched.':>6} {'q->run':>6} {'in-proc':>7}"
    )
    phase = None
    for s, row in zip(chain, rows, strict=True):
        if s.phase != phase:
            phase = s.phase
            print(f"  [{phase}]")
        inp = steps.get(s.key.split(" (try ")[0])
        in_run = "-" if s.orchestration or inp is None else f"{inp['end'] - inp['start']:.2f}"
        run = f"{'-':>6}" if s.resumed else f"{s.run:6.2f}"
        print(
            f"  {s.key:46} {_f(s.scheduled)} {_f(s.queued)} {_f(s.start)} {_f(s.end)} {run} {row['gap']:5.1f}"
            f" {row['driver']:6.1f} {row['trigger']:7.1f} {row['retry']:6.1f} {row['scheduling']:6.1f}"
            f" {row['queued']:6.1f} {in_run:>7}"
        )

    print("\noff the critical path (in parallel, or skipped), scheduler; s after t0")
    for ti in others:
        if ti["rel_start"] is not None and ti["rel_end"] is not None:
            when = f"{ti['rel_start']:6.1f} -> {ti['rel_end']:6.1f} ({ti['rel_end'] - ti['rel_start']:5.1f})"
        else:
            when = "not run"
        task = ti["task_id"] + (
            f" (try {ti['try_number']})" if ti["try_number"] > 1 or ti["state"] == "failed" else ""
        )
        print(
            f"  {ti['dag_id'][len(MODEL) + 1 :]:7} {task:28} {ti['state'] or '-':8} {when}  {ti['dag_run_id']}"
        )

    print("\nin-process timeline (s after t0; one Python process, the library calls one after the other)")
    print(f"  {'step':46} {'start':>7} {'end':>7} {'run':>7}")
    phase = None
    for s in inproc["steps"]:
        if s["phase"] != phase:
            phase = s["phase"]
            print(f"  [{phase}]")
        print(f"  {s['key']:46} {s['start']:7.2f} {s['end']:7.2f} {s['end'] - s['start']:7.2f}")
    heavy = sorted(inproc["imports"].items(), key=lambda kv: -kv[1])
    print(
        f"  imports before t0, not in the total: {imports:.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in heavy if v >= 0.05)
        + ")"
    )

    print(f"\n{'phases (s)':32} {'scheduler':>10} {'in-process':>11} {'ratio':>7}")
    s_prev = i_prev = 0.0
    for name in PHASES:
        s_end = max(s.end for s in chain if s.phase == name)
        i_end = max(s["end"] for s in inproc["steps"] if s["phase"] == name)
        s_len, i_len = s_end - s_prev, i_end - i_prev
        print(f"  {name:30} {s_len:10.1f} {i_len:11.1f} {s_len / i_len:6.1f}x")
        s_prev, i_prev = s_end, i_end

    run_time = sum(s.run for s in chain)
    task_time = sum(s.run for s in chain if not s.orchestration)
    sums = {k: sum(r[k] for r in rows) for k in rows[0]}
    print("\ntotals (s)")
    print(f"  scheduler: t0 -> first prediction by the new champion  {sched_total:7.1f}")
    print(
        f"    steps running                                        {run_time:7.1f}  ({run_time / sched_total:.0%};"
        f" library work {task_time:.1f}, orchestration-only tasks {run_time - task_time:.1f})"
    )
    print(
        f"    gaps between steps                                   {sums['gap']:7.1f}  ({sums['gap'] / sched_total:.0%})"
    )
    print(f"      benchmark driver (noticing, REST call, landing)    {sums['driver']:7.1f}")
    print(f"      deferred sensor noticing the landing (triggerer)   {sums['trigger']:7.1f}")
    print(f"      failed tries and retry delays                      {sums['retry']:7.1f}")
    print(f"      scheduling (deps, Asset, trigger, run ahead)       {sums['scheduling']:7.1f}")
    print(f"      queued -> running (executor, task process start)   {sums['queued']:7.1f}")
    print(
        f"  in-process: t0 -> first prediction by the new champion {in_total:7.1f}  (calls {in_steps:.1f}, "
        f"between calls {in_total - in_steps:.2f})"
    )
    print(f"    imports, once per process (not in the total)         {imports:7.1f}")
    print(
        f"  ratio scheduler / in-process                           {sched_total / in_total:6.1f}x  (with the "
        f"in-process imports counted {sched_total / (in_total + imports):.1f}x; scheduler without the driver "
        f"{(sched_total - sums['driver']) / in_total:.1f}x)"
    )
    # Library calls only: no landing, no orchestration-only task, no resumed sensor (its run is not measured).
    matched = [
        (s.run, steps[s.key])
        for s in chain
        if s.key in steps and not (s.orchestration or s.resumed or "(benchmark)" in s.key)
    ]
    print(
        f"  the same calls, matched step by step ({len(matched)} steps): as tasks {sum(r for r, _ in matched):.1f} s,"
        f" in-process {sum(i['end'] - i['start'] for _, i in matched):.1f} s"
    )
    print("\nCPU seconds used during each part (and their share of all cores over the part)")
    for name, (a, b) in (
        ("scheduler, t0 -> first new prediction", sched["cpu"]),
        ("in-process", inproc["cpu"]),
    ):
        wall, cores = b["at"] - a["at"], os.cpu_count() or 1
        names = {
            "airflow": "Airflow + tasks",
            "mlflow": "MLflow",
            "benchmark": "benchmark + child",
            "postgres": "PostgreSQL (all users)",
        }
        used = {k: b[k] - a[k] for k in ("machine", *names)}
        used["other work"] = used["machine"] - sum(used[k] for k in names)
        figures = ", ".join(
            f"{names.get(k, k)} {used[k]:.1f} ({used[k] / wall / cores:.0%})" for k in (*names, "other work")
        )
        print(f"  {name} ({wall:.0f} s): {figures}")
        if used["other work"] / wall / cores > 0.2:
            print(
                f"    warning: other work took {used['other work'] / wall / cores:.0%} of the cores: figures skewed"
            )
    a, b = sched["cpu"]
    print(
        f"  the loop itself: scheduler side {b['airflow'] - a['airflow']:.1f} CPU-s (Airflow with its tasks, t0 -> "
        f"first new prediction); in-process {inproc['loop_cpu']:.1f} CPU-s (the child, t0 -> first new prediction)"
    )
    if celery is not None:
        _report_celery(chain, rows, sched, celery)


def _report_celery(
    chain: list[Step], rows: list[dict[str, float]], sched: dict[str, Any], celery: dict[str, Any]
) -> None:
    """The Celery profile's scheduler side beside the local one's (same loop, same driver, measured after it)."""
    c_chain, _others = _analyse(celery)
    c_rows = _gaps(c_chain)
    print(
        "\nCelery profile (CeleryExecutor, 2 workers, Redis) beside the local one (LocalExecutor), same loop"
    )
    print("setup, not timed: Celery " + _pairs(celery["setup"]) + "; local " + _pairs(sched["setup"]))
    print(
        f"outcome: Celery promote_champion {celery['promotion']}, champion "
        f"v{'/'.join(celery['versions']['before'])} -> v{'/'.join(celery['versions']['after'])}"
    )
    print(f"  {'phases (s)':30} {'local':>8} {'celery':>8} {'ratio':>7}")
    l_prev = c_prev = 0.0
    for name in PHASES:
        l_end = max(s.end for s in chain if s.phase == name)
        c_end = max(s.end for s in c_chain if s.phase == name)
        l_len, c_len = l_end - l_prev, c_end - c_prev
        print(f"  {name:30} {l_len:8.1f} {c_len:8.1f} {c_len / l_len:6.2f}x")
        l_prev, c_prev = l_end, c_end
    local_sums = {k: sum(r[k] for r in rows) for k in rows[0]}
    celery_sums = {k: sum(r[k] for r in c_rows) for k in c_rows[0]}
    print(f"  {'totals (s)':30} {'local':>8} {'celery':>8}")
    print(f"  {'t0 -> first new prediction':30} {chain[-1].end:8.1f} {c_chain[-1].end:8.1f}")
    print(f"  {'steps running':30} {sum(s.run for s in chain):8.1f} {sum(s.run for s in c_chain):8.1f}")
    for key, label in (
        ("scheduling", "scheduling"),
        ("queued", "queued -> running"),
        ("trigger", "sensor noticing the landing"),
        ("retry", "failed tries, retry delays"),
        ("driver", "benchmark driver"),
    ):
        print(f"    {label:28} {local_sums[key]:8.1f} {celery_sums[key]:8.1f}")
    print(
        f"  ratio Celery / local: {c_chain[-1].end / chain[-1].end:.2f}x "
        f"({len(c_chain)} steps on the Celery path, {len(chain)} on the local one)"
    )


def _gaps(chain: list[Step]) -> list[dict[str, float]]:
    """Each step's gap after the previous one, split into driver, trigger, retry, scheduling, queued -> running."""
    rows = []
    prev = 0.0
    for s in chain:
        row = dict.fromkeys(("gap", "driver", "trigger", "retry", "scheduling", "queued"), 0.0)
        if s.resumed:  # the trigger fires (scheduled), the scheduler queues it, it runs execute_complete
            row["gap"] = max(0.0, s.end - prev)
            fired = min(s.end, max(prev, s.scheduled if s.scheduled is not None else prev))
            queued = min(s.end, max(fired, s.queued if s.queued is not None else fired))
            row.update(trigger=fired - prev, scheduling=queued - fired, queued=s.end - queued)
        else:
            gap = row["gap"] = max(0.0, s.start - prev)
            driver = min(gap, max(0.0, s.driver_at - prev)) if s.driver_at is not None else 0.0
            # A later try is scheduled again once the earlier tries failed and the retry delay passed.
            again = s.scheduled if s.scheduled is not None else s.start
            retry = min(gap - driver, max(0.0, again - prev)) if s.retried else 0.0
            ready = prev + driver + retry
            left = gap - driver - retry
            queued = min(left, max(0.0, s.start - max(s.queued, ready))) if s.queued is not None else 0.0
            row.update(driver=driver, retry=retry, queued=queued, scheduling=left - queued)
        rows.append(row)
        prev = max(prev, s.end)
    return rows


def _pairs(figures: dict[str, float]) -> str:
    return ", ".join(f"{k.strip()} {v:.1f} s" for k, v in figures.items())


def _f(value: float | None) -> str:
    return f"{value:6.1f}" if value is not None else f"{'-':>6}"


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _rel(value: str | None, t0: datetime) -> float | None:
    return None if value is None else _rel_dt(datetime.fromisoformat(value), t0)


def _rel_dt(value: datetime, t0: datetime) -> float:
    return (value - t0).total_seconds()


def _since(t0: datetime) -> float:
    return _rel_dt(datetime.now(UTC), t0)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(message)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
