"""Runs of the ingest DAG with ``dag.test()`` on the test's own home, warehouse and alert catcher."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from airloop.store.ledger import ledger_entries

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2013, 1, 2)


def dag(file: str, dag_id: str):
    from airloop.core.settings import settings

    settings.cache_clear()
    module_spec = importlib.util.spec_from_file_location(f"dags_{dag_id}", ROOT / "dags" / file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, dag_id)


def ingest_dag():
    return dag("ingest.py", "flights_delay_ingest")


def run(day: date) -> str:
    return run_of(day).state


def run_of(day: date):
    """The finished DAG run that ingested ``day``."""
    # A manual run processes the last complete interval before its logical date: the day before.
    return ingest_dag().test(
        logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    )


def landing(config) -> Path:
    return config.landing_for("flights_delay")


def ledger(engine) -> dict:
    return {e.partition: e for e in ledger_entries(engine, "flights_delay")}


def sa_has_rows(engine, spec) -> bool:
    import sqlalchemy as sa

    if not sa.inspect(engine).has_table(spec.batches_table):
        return False
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {spec.batches_table}")).scalar_one() > 0
