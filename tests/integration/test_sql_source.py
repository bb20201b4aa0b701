"""A model fed by a SQL source, chained on another model's table: ``flights_minutes`` reads the flights that
``flights_delay``'s ingestion validated, from the shared warehouse, through an Airflow connection, with the real
ingest DAG (``dag.test()``), on SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from airloop.core.settings import settings
from airloop.local.demo.replay import day_frame
from airloop.model.context import ModelContext
from airloop.store.db import open_warehouse, sync_table
from airloop.store.ledger import LedgerEntry, ledger_entries, partition_row_count, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "flights_minutes"
DAY = date(2013, 1, 2)


def _spec(**contract_changes) -> dict:
    raw = yaml.safe_load((ROOT / "config" / "models" / "flights_delay.yaml").read_text())
    columns = [c["name"] for c in raw["contract"]["columns"]]
    raw.update(
        name=MODEL,
        target={"kind": "regression", "column": "arr_delay", "label_delay_hours": 24},
        source={
            "kind": "sql",
            "conn_id": "airloop_warehouse",
            # The day's flights as flights_delay's ingestion validated them (its table's own columns aside).
            "query": f"SELECT {', '.join(columns)} FROM flights_delay_batches "
            "WHERE time_hour >= :start AND time_hour < :end ORDER BY _partition, _row",
        },
    )
    raw["promotion"].update(metric="rmse", floor=60)
    for column in raw["contract"]["columns"]:
        column.update(contract_changes.get(column["name"], {}))
    return raw


@pytest.fixture
def chained(airflow_db, airloop_home, warehouse_url, catcher, tmp_path, monkeypatch) -> ModelContext:
    """flights_delay's days in the warehouse; flights_minutes reading them through connection airloop_warehouse."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "flights_delay.yaml").write_text(
        (ROOT / "config" / "models" / "flights_delay.yaml").read_text()
    )
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(models))
    url = sa.engine.make_url(warehouse_url)
    if url.get_backend_name() == "sqlite":
        connection = {"conn_type": "sqlite", "host": url.database}
    else:
        connection = {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
                      "schema": url.database}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_WAREHOUSE", json.dumps(connection))
    settings.cache_clear()
    upstream = ModelContext.load("flights_delay")
    engine = open_warehouse(warehouse_url)
    sync_table(engine, batches_table(upstream.spec))
    for day in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)):
        entry = LedgerEntry(partition=day.isoformat(), status="passed", checksum=f"seed-{day}".ljust(64, "0"))
        replace_partition(engine, upstream.spec, day_frame(day), entry)
    yield models
    settings.cache_clear()


def _ingest_dag(models: Path, spec: dict):
    """The ingest DAG of ``spec``, written to the models folder and parsed as the DAG processor would."""
    (models / f"{spec['name']}.yaml").write_text(json.dumps(spec, default=str))
    settings.cache_clear()
    module_spec = importlib.util.spec_from_file_location("ingest_dags", ROOT / "dags" / "ingest.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, f"{spec['name']}_ingest")


def _ingest(models: Path, spec: dict, day: date) -> str:
    dag = _ingest_dag(models, spec)
    assert "wait_for_partition" not in dag.task_ids  # ingest_batch runs the query
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return dag.test(logical_date=logical).state


def _expected_rows(day: date) -> int:
    """The flights of the UTC day: the interval the query selects (flights_delay's partitions are local days)."""
    frames = pd.concat([day_frame(day + timedelta(days=d)) for d in (-1, 0, 1)])
    start = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
    return int(((frames["time_hour"] >= start) & (frames["time_hour"] < start + pd.Timedelta(days=1))).sum())


def test_a_chained_model_ingests_its_interval_through_the_query(chained):
    assert _ingest(chained, _spec(), DAY) == "success"
    ctx = ModelContext.load(MODEL)
    [entry] = ledger_entries(ctx.warehouse, MODEL)
    expected = _expected_rows(DAY)
    assert (entry.partition, entry.status, entry.rows) == (DAY.isoformat(), "passed", expected)
    assert entry.files == ["query.parquet"]
    assert partition_row_count(ctx.warehouse, ctx.spec, DAY.isoformat()) == expected

    # A re-run reads the same rows again and replaces the partition: nothing doubles.
    assert _ingest(chained, _spec(), DAY) == "success"
    assert partition_row_count(ctx.warehouse, ctx.spec, DAY.isoformat()) == expected


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_query_result_that_breaks_the_contract_is_quarantined_as_received(chained, catcher):
    strict = _spec(distance={"max": 1000})
    assert _ingest(chained, strict, DAY) == "failed"
    ctx = ModelContext.load(MODEL)
    [entry] = ledger_entries(ctx.warehouse, MODEL)
    assert entry.status == "quarantined" and "column 'distance'" in entry.reason
    kept = Path(entry.quarantine_path) / "query.parquet"
    delivered = ctx.landing / f"date={DAY.isoformat()}" / "query.parquet"
    assert kept.read_bytes() == delivered.read_bytes()
    assert not sa.inspect(ctx.warehouse).has_table(ctx.spec.batches_table)  # nothing reached the warehouse
    assert any("quarantined" in m["Subject"] for m in catcher.emails())


WEEK = [
    date(2013, 1, 5) + timedelta(days=d) for d in range(8)
]  # the week of 6 January and the evening before


def _shipped(name: str, **source_changes) -> dict:
    raw = yaml.safe_load((ROOT / "config" / "models" / f"{name}.yaml").read_text())
    raw["source"].update(source_changes)
    return raw


def _run_week(models: Path, spec: dict) -> tuple[str, dict[str, str]]:
    run = _ingest_dag(models, spec).test(logical_date=datetime(2013, 1, 13, tzinfo=UTC))
    return run.state, {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_the_shipped_weekly_model_waits_for_every_day_of_its_week_then_loads_it(chained, warehouse_url):
    """flights_arrival_minutes as shipped (its contract, its query), with a short wait: a week whose last day
    flights_delay has not settled fails naming that day, and nothing is read; once settled, the week loads."""
    upstream = ModelContext.load("flights_delay")
    engine = open_warehouse(warehouse_url)
    for day in WEEK[:-1]:
        if day.isoformat() not in {e.partition for e in ledger_entries(engine, "flights_delay")}:
            entry = LedgerEntry(
                partition=day.isoformat(), status="passed", checksum=f"seed-{day}".ljust(64, "0")
            )
            replace_partition(engine, upstream.spec, day_frame(day), entry)
    spec = _shipped("flights_arrival_minutes", wait_timeout_minutes=0.02, poke_interval_seconds=0.2)
    state, tasks = _run_week(chained, spec)
    assert state == "failed" and tasks["wait_for_upstream"] == "failed"
    assert tasks["ingest_batch"] == "upstream_failed"
    ctx = ModelContext.load("flights_arrival_minutes")
    assert ledger_entries(ctx.warehouse, ctx.name) == []
    assert not (ctx.landing / "date=2013-01-06").exists()  # nothing was read

    last = WEEK[-1]
    entry = LedgerEntry(partition=last.isoformat(), status="passed", checksum=f"seed-{last}".ljust(64, "0"))
    replace_partition(engine, upstream.spec, day_frame(last), entry)
    state, tasks = _run_week(chained, spec)
    assert state == "success", tasks
    [loaded] = ledger_entries(ctx.warehouse, ctx.name)
    frames = pd.concat([day_frame(day) for day in WEEK])
    start = pd.Timestamp(datetime(2013, 1, 6, tzinfo=UTC))
    expected = int(
        ((frames["time_hour"] >= start) & (frames["time_hour"] < start + pd.Timedelta(days=7))).sum()
    )
    assert (loaded.partition, loaded.status, loaded.rows) == ("2013-01-06", "passed", expected)
    assert 4_900 <= expected <= 6_900


def test_the_shipped_monthly_model_derives_its_classes_in_the_query_and_passes_its_contract(
    chained, warehouse_url
):
    upstream = ModelContext.load("flights_delay")
    engine = open_warehouse(warehouse_url)
    january = [date(2013, 1, 1) + timedelta(days=d) for d in range(31)]
    seeded = {e.partition for e in ledger_entries(engine, "flights_delay")}
    for day in january:
        if day.isoformat() not in seeded:
            entry = LedgerEntry(
                partition=day.isoformat(), status="passed", checksum=f"seed-{day}".ljust(64, "0")
            )
            replace_partition(engine, upstream.spec, day_frame(day), entry)
    spec = _shipped("flights_delay_band", wait_timeout_minutes=0.02, poke_interval_seconds=0.2)
    run = _ingest_dag(chained, spec).test(logical_date=datetime(2013, 2, 1, tzinfo=UTC))
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    ctx = ModelContext.load("flights_delay_band")
    [loaded] = ledger_entries(ctx.warehouse, ctx.name)
    frames = pd.concat([day_frame(day) for day in january])
    in_january = frames[frames["time_hour"] < pd.Timestamp("2013-02-01", tz="UTC")]
    assert (loaded.partition, loaded.rows) == ("2013-01-01", len(in_january))
    with ctx.warehouse.connect() as conn:
        bands = dict(
            conn.execute(
                sa.text("SELECT delay_band, COUNT(*) FROM flights_delay_band_batches GROUP BY 1")
            ).all()
        )
    delay = in_january["arr_delay"]
    assert bands == {
        None: int(delay.isna().sum()),
        "early": int((delay <= 0).sum()),
        "on_time": int(((delay > 0) & (delay <= 15)).sum()),
        "late": int(((delay > 15) & (delay <= 60)).sum()),
        "very_late": int((delay > 60).sum()),
    }
