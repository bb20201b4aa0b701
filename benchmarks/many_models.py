"""What many models cost Airflow: the parse time of every DAG file, and the stack's idle CPU, at 1, 10 and 35 specs.

Every DAG file in ``dags/`` builds one DAG per spec of the models folder at parse time
(:func:`airloop.airflow.dagkit.model_specs`), so each model adds to every file's parse and to the DAG processor's
work on every re-parse. For each N (``--models``, default 1,10,35) the benchmark writes N specs to a temporary
models folder: copies of ``config/models/flights_delay.yaml`` named ``model_001`` ... (only ``name`` differs; the
assets, tables and DAG ids follow from it), and points ``AIRLOOP_MODELS_DIR`` at it. Then:

* **parse time**: measured as the DAG processor experiences it. Airflow 3.3's DAG processor forks one process per
  file from its manager (a bare ``os.fork``), and the child runs the file through ``SourceFileLoader.exec_module``.
  The manager has imported ``airflow.dag_processing.manager`` (with it the processor, the ORM models and the DAG
  serializer), called ``gc.freeze()`` before its parsing loop (so the forked child's collector never walks
  Airflow's own objects), and pre-imports the ``airflow.*`` modules the file names before each fork
  (``parsing_pre_import_modules``), but never imports airloop. Here each measurement is a fresh interpreter with the
  stack's environment (:func:`airloop.local.env.stack_env`) brought to that same state (the same imports, the
  freeze, Airflow's own ``iter_airflow_imports`` for the pre-imports), then the DAG file is executed
  (``importlib.util.spec_from_file_location`` + ``exec_module``); only the exec is timed, so airloop's own
  imports, reading and validating the N specs and building the DAGs are in it. Each (N, file) is measured
  ``--repeat`` times (default 5; the files interleaved); the median and the max are printed, against the goal of
  0.15 s per file. The DAG processor's own work after the exec (bagging, serializing each DAG, sending it to the
  manager) is not in this figure; the idle CPU has it, and the stack part prints the DAG processor's own "last
  duration" of each file (fork to result, serialization included) from its file-processing stats.
  Each probe also reports the heavy libraries the exec imported (pandas, sklearn, mlflow, great_expectations,
  evidently, pyarrow, numpy; any already loaded by ``airflow.sdk`` are named apart) and how many DAGs the file
  defined. airloop is installed editable and this machine sets ``PYTHONDONTWRITEBYTECODE=1``, so the library's
  bytecode is compiled first as ``make install`` does (``python -m compileall -q include dags``), and the cached
  bytecode of ``include/`` and ``dags/`` is checked fresh before and after the parse measurements.
* **idle CPU**: the real local stack (:class:`airloop.local.stack.Stack`: the four Airflow components with the
  LocalExecutor, SQLite metadata DB and warehouse, the MLflow server) in an isolated home on free ports, as
  ``tests/e2e`` starts one. Once healthy, the benchmark waits (through the REST API, as the admin user) until the DAG
  processor has parsed all N x 5 DAGs, pausing every DAG as it appears (airloop's DAGs are not paused upon creation,
  and the ingest DAG's catchup would start runs); runs the scheduler created meanwhile are deleted, and it waits
  until no run is queued or running and no task instance is active. After 10 s to settle, it measures for
  ``--idle-seconds`` (default 60) the CPU seconds of each component's process tree (the process, its live
  descendants, and the children it has reaped: the DAG processor's parse processes, the scheduler's task
  processes) with psutil, and prints them as CPU % of one core, against the 1-model figure (the first N measured
  when 1 is not among them): the growth is the ratio. The DAG processor re-parses every file every 30 s
  (Airflow's ``min_file_process_interval``), so its figure grows with N. The CPU of the rest of the machine over
  the same window is printed too (it may be shared with other work). Then the stack is stopped.

Run it (about 15 minutes on 2 cores for 1, 10 and 35 models)::

    .venv/bin/python benchmarks/many_models.py                    # progress on stderr, figures on stdout
    .venv/bin/python benchmarks/many_models.py --skip-stack       # parse times only (about 3 minutes)
    .venv/bin/python benchmarks/many_models.py --models 1,35 --repeat 3 --idle-seconds 30

What it prints: one table (models | DAG file | parse median | parse max | goal and median / goal | heavy imports |
DAGs), then the idle CPU per component per N (CPU seconds, CPU %, and x the anchor's CPU %).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _procs import tree_cpu

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "config" / "models" / "flights_delay.yaml"
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
#: Libraries a DAG file must not import at parse time (by top-level package).
HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "evidently", "pyarrow", "numpy")
#: The goal: seconds per DAG file at 35 models.
GOAL_SECONDS = 0.15
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server", "log-server", "mlflow")
#: Folders whose bytecode `make install` compiles (the editable library and the DAG files).
COMPILED = ("include", "dags")
SETTLE_SECONDS = 10.0
#: Task instance states that mean work is going on or about to.
ACTIVE_TI = ("queued", "scheduled", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting")

# A fresh interpreter in the state of the DAG processor's manager when it forks a parse process: Airflow's
# dag_processing.manager imported (with it the processor, the ORM models and the serializer), gc.freeze() as the
# manager's before_run calls it, and the airflow.* modules the file names pre-imported as the manager does before
# each fork (processor.py: _pre_import_airflow_modules, with Airflow's own iter_airflow_imports). Then the file is
# executed and only that is timed. argv: the DAG file, the heavy package names (JSON).
_PROBE = r"""
import gc, importlib, importlib.util, json, sys, time
import airflow.dag_processing.manager
from airflow.sdk import DAG
from airflow.utils.file import iter_airflow_imports
path, heavy = sys.argv[1], set(json.loads(sys.argv[2]))
def tops(names):
    return sorted({n.split(".")[0] for n in names if n.split(".")[0] in heavy})
gc.freeze()
for name in iter_airflow_imports(path):
    importlib.import_module(name)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("airloop_parse_probe", path)
module = importlib.util.module_from_spec(spec)
start = time.perf_counter()
spec.loader.exec_module(module)
seconds = time.perf_counter() - start
dags = [v.dag_id for v in vars(module).values() if isinstance(v, DAG)]
print(json.dumps({
    "seconds": seconds,
    "dags": len([d for d in dags if d != "airloop_broken_specs"]),
    "broken": "airloop_broken_specs" in dags,
    "heavy": tops(set(sys.modules) - before),
    "heavy_before": tops(before),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="1,10,35", help="numbers of specs, comma-separated (default 1,10,35)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="parse measurements per DAG file and N (default 5)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=60.0,
        help="how long the idle stack's CPU is measured (default 60)",
    )
    parser.add_argument("--skip-stack", action="store_true", help="parse times only; no stack, no idle CPU")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.models.split(",") if n.strip()})
    if not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--models needs positive numbers, --repeat at least 1")

    began = time.monotonic()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="airloop-many-models-"))
    keep = True
    try:
        compiled = _compile_bytecode()
        parse: dict[int, dict[str, dict[str, Any]]] = {}
        idle: dict[int, dict[str, float]] = {}
        for n in counts:
            models = _write_specs(work / f"models-{n}", n)
            parse[n] = _measure_parse(n, models, work / f"parse-home-{n}", args.repeat)
        stale_after = _stale_bytecode()
        if not args.skip_stack:
            for n in counts:
                expected = sum(r["dags"] for r in parse[n].values())
                idle[n] = _measure_idle(n, work / f"models-{n}", work / f"stack-{n}", expected, args)
        _report(
            parse=parse,
            idle=idle,
            repeat=args.repeat,
            idle_seconds=args.idle_seconds,
            compiled=compiled,
            stale_after=stale_after,
            load=(load_before, os.getloadavg()),
            took=time.monotonic() - began,
        )
        keep = False
    finally:
        if keep:
            _say(f"kept {work} (specs, stack homes and their logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)


# --- the specs ------------------------------------------------------------------------------------------------


def _write_specs(folder: Path, n: int) -> Path:
    """N copies of the template spec, ``model_001.yaml`` ..., each differing only in its name."""
    folder.mkdir(parents=True)
    text = TEMPLATE.read_text()
    for i in range(1, n + 1):
        name = f"model_{i:03d}"
        spec, count = re.subn(r"^name: flights_delay$", f"name: {name}", text, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"{TEMPLATE}: expected one line 'name: flights_delay', found {count}")
        (folder / f"{name}.yaml").write_text(spec)
    return folder


# --- bytecode -------------------------------------------------------------------------------------------------


def _compile_bytecode() -> dict[str, int]:
    """Compile the library's and the DAG files' bytecode as ``make install`` does; what was stale before."""
    stale = _stale_bytecode()
    _say(f"compiling bytecode: {sys.executable} -m compileall -q {' '.join(COMPILED)} ({len(stale)} stale)")
    subprocess.run([sys.executable, "-m", "compileall", "-q", *COMPILED], cwd=ROOT, check=True)
    left = _stale_bytecode()
    if left:
        raise SystemExit(f"bytecode still stale after compileall: {', '.join(map(str, left[:5]))}")
    return {"stale_before": len(stale), "files": sum(1 for _ in _sources())}


def _sources() -> list[Path]:
    return sorted(p for folder in COMPILED for p in (ROOT / folder).rglob("*.py"))


def _stale_bytecode() -> list[Path]:
    """Source files whose cached bytecode is missing or does not match them (as the import system checks it:
    magic number, source mtime and size in the header of a timestamp-based .pyc)."""
    stale = []
    for source in _sources():
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            header = cached.read_bytes()[:16]
        except FileNotFoundError:
            stale.append(source)
            continue
        st = source.stat()
        flags = int.from_bytes(header[4:8], "little")
        if header[:4] != importlib.util.MAGIC_NUMBER or (
            flags == 0
            and (
                int.from_bytes(header[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(header[12:16], "little") != st.st_size & 0xFFFFFFFF
            )
        ):
            stale.append(source)
    return stale


# --- parse time -----------------------------------------------------------------------------------------------


def _measure_parse(n: int, models: Path, home: Path, repeat: int) -> dict[str, dict[str, Any]]:
    """Each DAG file ``repeat`` times, the files interleaved; per file the seconds, DAGs and heavy imports."""
    from airloop.core.settings import load_settings
    from airloop.local.env import isolated_env, stack_env

    base = isolated_env(home, ROOT, AIRLOOP_MODELS_DIR=str(models))
    env = stack_env(load_settings(env=base), base)  # what the DAG processor runs with
    results: dict[str, dict[str, Any]] = {
        p.name: {
            "seconds": [],
            "heavy": set(),
            "heavy_before": set(),
            "dags": None,
            "broken": False,
        }
        for p in DAG_FILES
    }
    for attempt in range(1, repeat + 1):
        for path in DAG_FILES:
            out = subprocess.run(
                [sys.executable, "-c", _PROBE, str(path), json.dumps(HEAVY)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=300,
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"parsing {path.name} with {n} models failed:\n{out.stderr[-3000:]}")
            probe = json.loads(out.stdout.strip().splitlines()[-1])
            result = results[path.name]
            result["seconds"].append(probe["seconds"])
            result["heavy"].update(probe["heavy"])
            result["heavy_before"].update(probe["heavy_before"])
            result["broken"] |= probe["broken"]
            if result["dags"] not in (None, probe["dags"]):
                raise SystemExit(f"{path.name}: {result['dags']} DAGs, then {probe['dags']}")
            result["dags"] = probe["dags"]
        _say(
            f"{n} models, parse round {attempt}/{repeat}: "
            + ", ".join(f"{name} {r['seconds'][-1]:.3f} s" for name, r in results.items())
        )
    for name, result in results.items():
        if result["broken"] or result["dags"] != n:
            _say(
                f"warning: {name} defined {result['dags']} DAGs for {n} specs (broken specs: {result['broken']})"
            )
    return results


# --- idle CPU -------------------------------------------------------------------------------------------------


def _measure_idle(
    n: int, models: Path, home: Path, expected: int, args: argparse.Namespace
) -> dict[str, float]:
    """Start the stack on ``models``, wait for every DAG, pause them all, measure the idle CPU, stop it."""
    from airloop.core.settings import load_settings
    from airloop.local.demo.driver import AirflowApi
    from airloop.local.env import isolated_env
    from airloop.local.stack import Stack

    base = isolated_env(home, ROOT, AIRLOOP_MODELS_DIR=str(models))
    stack = Stack(
        load_settings(env=base), base_env=base, report=lambda line: _say(f"[stack, {n} models] {line}")
    )
    stack.start()
    try:
        api = AirflowApi(stack.airflow_url, "admin", stack.passwords["admin"])
        try:
            parsed_in = _wait_parsed_and_paused(api, expected, began=time.monotonic())
            _say(
                f"{n} models: all {expected} DAGs parsed and paused {parsed_in:.1f} s after the stack was healthy"
            )
            deleted = _clear_runs(api)
            _say(f"{n} models: {deleted} run(s) created before the pause deleted; nothing queued or running")
            time.sleep(SETTLE_SECONDS)
            pids = stack.pids()
            window_start = datetime.now(UTC)
            _say(f"{n} models: measuring the idle stack for {args.idle_seconds:.0f} s")
            before = _cpu_snapshot(pids)
            time.sleep(args.idle_seconds)
            after = _cpu_snapshot(pids)
            runs = _runs_since(api, window_start)
        finally:
            api.close()
    finally:
        stack.stop()
    durations = _processor_durations(stack.logs_dir / "dag-processor.log")
    wall = after["at"] - before["at"]
    used = {name: after[name] - before[name] for name in ("machine", "benchmark", *COMPONENTS)}
    used["other work"] = used["machine"] - sum(used[name] for name in ("benchmark", *COMPONENTS))
    if runs:
        _say(f"warning: {n} models: {runs} run(s) started or were active during the window: figures not idle")
    return {
        **used,
        "wall": wall,
        "runs": runs,
        "startup": stack.startup_seconds or 0.0,
        "parsed_in": parsed_in,
        "durations": durations,
    }


def _processor_durations(log: Path) -> dict[str, float]:
    """Each DAG file's "Last Duration" in the DAG processor's last "DAG File Processing Stats" table (it logs one
    every ``[dag_processor] print_stats_interval``, 30 s): the manager's own measure of a parse, from the fork to
    the result received, the serialization of the file's DAGs included. Columns are cut where the table's rule of
    dashes puts them (a cell may be empty)."""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "DAG File Processing Stats" in line]
    if not starts:
        return {}
    table = lines[starts[-1] + 1 :]
    table = table[next(i for i, line in enumerate(table) if line.strip()) :]
    header, rule, rows = table[0], table[1], table[2:]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    names = [header[a:b].strip() for a, b in spans]
    durations = {}
    for row in rows:
        if row.startswith("="):
            break
        cells = dict(zip(names, (row[a:b].strip() for a, b in spans), strict=True))
        if cells.get("Last Duration", "").endswith("s"):
            durations[Path(cells["File Path"]).name] = float(cells["Last Duration"][:-1])
    return durations


def _wait_parsed_and_paused(api: Any, expected: int, began: float, timeout: float = 600.0) -> float:
    """Pause every DAG as it appears, until all ``expected`` are there and paused; seconds it took."""
    pattern = quote("%", safe="")
    while True:
        errors = api.call("GET", "/importErrors?limit=100")
        if errors["total_entries"]:
            raise SystemExit(f"import errors: {json.dumps(errors['import_errors'])[:3000]}")
        dags = _all_dags(api, pattern)
        if len(dags) >= expected and all(d["is_paused"] for d in dags):
            if len(dags) > expected:
                raise SystemExit(f"{len(dags)} DAGs parsed, {expected} expected")
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise SystemExit(f"only {len(dags)} of {expected} DAGs parsed after {timeout:.0f} s")
        time.sleep(1)


def _all_dags(api: Any, pattern: str) -> list[dict[str, Any]]:
    """Every DAG, each paused, page by page: the API serves at most ``[api] maximum_page_limit`` (100) per call,
    fewer than 35 models' 175 DAGs."""
    dags: list[dict[str, Any]] = []
    while True:
        offset = len(dags)
        query = f"dag_id_pattern={pattern}&limit=100&offset={offset}"
        api.call("PATCH", f"/dags?{query}&update_mask=is_paused", is_paused=True)
        page = api.call("GET", f"/dags?limit=100&offset={offset}")
        dags += page["dags"]
        if not page["dags"] or len(dags) >= page["total_entries"]:
            return dags


def _clear_runs(api: Any, timeout: float = 180.0) -> int:
    """Delete every queued or running run (created before its DAG was paused); wait until no task instance is
    active. The number of runs deleted."""
    import httpx

    deleted = 0
    deadline = time.monotonic() + timeout
    while True:
        runs = api.call("GET", "/dags/~/dagRuns?state=queued&state=running&limit=1000")["dag_runs"]
        for run in runs:
            try:
                api.call("DELETE", f"/dags/{run['dag_id']}/dagRuns/{quote(run['dag_run_id'], safe='')}")
            except httpx.HTTPStatusError as exc:  # a retried call whose first try deleted it
                if exc.response.status_code != 404:
                    raise
        deleted += len(runs)
        states = "&".join(f"state={s}" for s in ACTIVE_TI)
        active = api.call("GET", f"/dags/~/dagRuns/~/taskInstances?{states}&limit=1")["total_entries"]
        if not runs and not active:
            return deleted
        if time.monotonic() > deadline:
            raise SystemExit(f"still {len(runs)} active run(s), {active} active task instance(s)")
        time.sleep(2)


def _runs_since(api: Any, since: datetime) -> int:
    """Runs that started during the window or are queued or running now."""
    started = quote(since.isoformat(), safe="")
    recent = api.call("GET", f"/dags/~/dagRuns?start_date_gte={started}&limit=1")["total_entries"]
    active = api.call("GET", "/dags/~/dagRuns?state=queued&state=running&limit=1")["total_entries"]
    return int(recent) + int(active)


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by the whole machine, this process (with the alert catcher's threads) and each
    component's process tree."""
    import psutil

    t = psutil.cpu_times()
    own = os.times()
    snapshot = {
        "at": time.monotonic(),
        "machine": t.user + t.nice + t.system + t.irq + t.softirq + t.steal,
        "benchmark": own.user + own.system + own.children_user + own.children_system,
    }
    for name in COMPONENTS:
        snapshot[name] = tree_cpu([pids[name]])
    return snapshot


# --- the report -----------------------------------------------------------------------------------------------


def _report(
    *,
    parse: dict[int, dict[str, dict[str, Any]]],
    idle: dict[int, dict[str, float]],
    repeat: int,
    idle_seconds: float,
    compiled: dict[str, int],
    stale_after: list[Path],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
    took: float,
) -> None:
    import airflow

    print(
        f"many models: parse time of every DAG file and the idle stack's CPU; template {TEMPLATE.name}; "
        f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
        f"{_load(load[0])} before, {_load(load[1])} after (shared with other work)"
    )
    print(
        f"bytecode: compiled before measuring (python -m compileall -q {' '.join(COMPILED)}; "
        f"{compiled['stale_before']} of {compiled['files']} files were stale, PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')}); "
        + (
            "all still fresh after the parse measurements"
            if not stale_after
            else f"{len(stale_after)} went stale during them (edited meanwhile): "
            + ", ".join(str(p.relative_to(ROOT)) for p in stale_after[:5])
        )
    )
    print(
        f"\nparse time per DAG file (s): a fresh interpreter in the DAG processor's state at its fork (manager "
        f"imported, gc frozen, the file's airflow.* imports pre-imported), exec_module of the file timed; median and max of {repeat}; anchor: the goal of {GOAL_SECONDS} s per file at 35 models"
    )
    print(
        f"  {'models':>6}  {'DAG file':12} {'median':>7} {'max':>7}  {'heavy imports':24} {'DAGs':>4}  "
        f"{'goal':>5} {'med/goal':>8}"
    )
    for n, files in parse.items():
        for name, r in files.items():
            median, peak = statistics.median(r["seconds"]), max(r["seconds"])
            heavy = ", ".join(sorted(r["heavy"])) or "none"
            if r["heavy_before"]:
                heavy += f" (airflow.sdk had {', '.join(sorted(r['heavy_before']))})"
            flag = "" if median <= GOAL_SECONDS else "  over"
            print(
                f"  {n:6d}  {name:12} {median:7.3f} {peak:7.3f}  {heavy:24} {r['dags']:4d}  {GOAL_SECONDS:5.2f} "
                f"{median / GOAL_SECONDS:8.0%}{flag}"
            )
        total = sum(statistics.median(r["seconds"]) for r in files.values())
        print(f"  {n:6d}  {'all 5 files':12} {total:7.3f}  (sum of the medians: one re-parse of every file)")
    print("  over: median above the goal")

    if not idle:
        print("\nidle CPU: skipped (--skip-stack)")
    else:
        anchor_n = min(idle)
        anchor = idle[anchor_n]
        print(
            f"\nidle CPU of the stack, all DAGs paused, no runs: CPU seconds over {idle_seconds:.0f} s, CPU % of one "
            f"core, and x the {anchor_n}-model CPU % (the anchor)"
        )
        header = "".join(f"  {f'{n} models':>22}" for n in idle)
        print(f"  {'component':14}{header}")
        rows = [*COMPONENTS, "stack total", "other work"]
        for row in rows:
            cells = []
            for used in idle.values():
                seconds = _row(used, row)
                pct = 100 * seconds / used["wall"]
                base = 100 * _row(anchor, row) / anchor["wall"]
                ratio = f"x{pct / base:.1f}" if base > 0.05 else "  -"
                cells.append(f"  {seconds:6.1f} s {pct:5.1f}% {ratio:>6}")
            print(f"  {row:14}" + "".join(cells))
        print(
            "  (stack total = the five components; other work = the rest of the machine, this benchmark excluded)"
        )
        for n, used in idle.items():
            print(
                f"  {n} models: stack healthy in {used['startup']:.0f} s, all DAGs parsed and paused "
                f"{used['parsed_in']:.0f} s later; window {used['wall']:.1f} s; runs during it: {used['runs']:.0f}"
            )
        print(
            '\nthe DAG processor\'s own "Last Duration" of each file (s; fork to result, serialization included), '
            "from the last stats table in its log"
        )
        names = [p.name for p in DAG_FILES]
        print(f"  {'models':>6}  " + "".join(f"{name:>12}" for name in names) + f"{'all files':>12}")
        for n, used in idle.items():
            durations = used["durations"]
            cells = "".join(
                f"{durations[name]:12.2f}" if name in durations else f"{'-':>12}" for name in names
            )
            print(f"  {n:6d}  {cells}{sum(durations.get(name, 0.0) for name in names):12.2f}")
    print(f"\nbenchmark took {took / 60:.1f} min")


def _row(used: dict[str, float], row: str) -> float:
    if row == "stack total":
        return sum(used[name] for name in COMPONENTS)
    return used[row]


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
