"""The ingest DAG on the real stack (LocalExecutor, PostgreSQL), driven through the REST API.

Seven real days are backfilled and must all pass with the source's row counts; a re-run changes nothing; a day with
a wrong type, a day missing a column and an empty day are quarantined with their reasons, their files kept, the
warehouse untouched, and an alert received by the local SMTP server and the Slack receiver.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, date, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from airloop.local.demo.replay import day_frame, write_partition
from airloop.model.context import ModelContext
from airloop.store.ledger import partition_row_count

pytestmark = pytest.mark.e2e

MODEL = "flights_delay"
DAG_ID = f"{MODEL}_ingest"
GOOD = [date(2013, 1, d) for d in range(1, 8)]
WRONG_TYPE, MISSING_COLUMN, EMPTY = date(2013, 1, 8), date(2013, 1, 9), date(2013, 1, 10)


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _status(stack) -> dict[str, dict]:
    out = subprocess.run(
        [str(Path(stack.env["PATH"].split(":")[0]) / "airloop"), "status", MODEL, "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {b["partition"]: b for b in json.loads(out.stdout)["batches"]}


@pytest.fixture(scope="module")
def ctx(stack):
    """The model's context on the stack's settings (its warehouse, the one the tasks write)."""
    return ModelContext.load(MODEL, stack.settings)


@pytest.fixture(scope="module")
def landed(stack, ctx):
    """Every day of this module landed (the good week and the three bad days); {good day: rows}."""
    landing = ctx.landing
    expected = {}
    for day in GOOD:
        frame = day_frame(day)
        write_partition(frame, landing, day)
        expected[day.isoformat()] = len(frame)
    wrong = day_frame(WRONG_TYPE)
    wrong["dep_delay"] = wrong["dep_delay"].astype(object)
    wrong.loc[10, "dep_delay"] = "late"
    write_partition(wrong, landing, WRONG_TYPE, "csv")
    write_partition(day_frame(MISSING_COLUMN).drop(columns=["carrier"]), landing, MISSING_COLUMN, "csv")
    write_partition(day_frame(EMPTY).iloc[0:0], landing, EMPTY, "csv")
    stack.wait_for_dag(DAG_ID)
    return expected


@pytest.fixture(scope="module")
def good_week(stack, landed):
    """The seven good days backfilled through the ingest DAG (once per module); their runs, oldest first."""
    started = time.monotonic()
    runs = stack.backfill(DAG_ID, _at(GOOD[0]), _at(GOOD[-1]), max_active_runs=4)
    print(f"7-day backfill of {DAG_ID}: {time.monotonic() - started:.1f} s")
    return runs


def test_seven_day_backfill_passes_with_source_row_counts(stack, ctx, landed, good_week):
    assert [r["state"] for r in good_week] == ["success"] * 7, good_week
    batches = _status(stack)
    # Other modules on this stack write other months: the good week's range holds exactly its seven days.
    week = {
        p: (b["status"], b["rows"])
        for p, b in batches.items()
        if GOOD[0].isoformat() <= p <= GOOD[-1].isoformat()
    }
    assert week == {p: ("passed", rows) for p, rows in landed.items()}, batches
    for partition, rows in landed.items():
        assert partition_row_count(ctx.warehouse, ctx.spec, partition) == rows


def test_rerunning_a_day_changes_nothing(stack, ctx, landed, good_week):
    spec, engine = ctx.spec, ctx.warehouse
    before = _status(stack)["2013-01-03"]
    [run] = [
        r
        for r in stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", query={"limit": 100})["dag_runs"]
        if r["data_interval_start"].startswith("2013-01-03")
    ]
    stack.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
        dry_run=False,
        dag_run_id=run["dag_run_id"],
        reset_dag_runs=True,
        only_failed=False,
    )
    # The cleared run is finished again once it has an end other than its first one.
    finished = stack.wait_for_run(DAG_ID, run["dag_run_id"], not_ended_at=run["end_date"])
    assert finished["state"] == "success"
    after = _status(stack)["2013-01-03"]
    assert (after["rows"], after["checksum"], after["status"]) == (
        before["rows"],
        before["checksum"],
        "passed",
    )
    assert after["updated_at"] > before["updated_at"], "the day was not processed again"
    assert partition_row_count(engine, spec, "2013-01-03") == landed["2013-01-03"]
    assert sum(partition_row_count(engine, spec, p) for p in landed) == sum(landed.values())


def test_bad_days_are_quarantined_alerted_and_kept_out(stack, ctx, landed, good_week):
    runs = stack.backfill(DAG_ID, _at(WRONG_TYPE), _at(EMPTY), max_active_runs=3)
    assert [r["state"] for r in runs] == ["failed"] * 3
    batches = _status(stack)
    expectations = {
        WRONG_TYPE: "column 'dep_delay': type object, expected number",
        MISSING_COLUMN: "missing column(s): carrier",
        EMPTY: "row count 0 outside",
    }
    spec, engine, landing = ctx.spec, ctx.warehouse, ctx.landing
    for day, reason in expectations.items():
        batch = batches[day.isoformat()]
        assert batch["status"] == "quarantined"
        assert reason in batch["reason"]
        kept = Path(batch["quarantine_path"])
        assert (kept / "flights.csv").read_bytes() == (landing / f"date={day}" / "flights.csv").read_bytes()
        assert partition_row_count(engine, spec, day.isoformat()) == 0
    assert sum(partition_row_count(engine, spec, p) for p in landed) == sum(landed.values())

    emails = [message_from_bytes(p.read_bytes()) for p in sorted((stack.catcher_dir / "email").glob("*.eml"))]
    hooks = [json.loads(p.read_text()) for p in sorted((stack.catcher_dir / "slack").glob("*.json"))]
    # Other tests share the catcher: count only the alerts about these days' quarantines, one per channel each.
    for day in expectations:
        subjects = [m["Subject"] for m in emails if f"batch {day.isoformat()} quarantined" in m["Subject"]]
        texts = [h["text"] for h in hooks if f"Batch {day.isoformat()} of model flights_delay" in h["text"]]
        assert len(subjects) == 1, [m["Subject"] for m in emails]
        assert len(texts) == 1
