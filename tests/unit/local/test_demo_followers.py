"""What the demo does for the chained models, decided from the warehouse: which partitions it still expects and
which monitor runs are due (the REST API calls around it run on the stack: `make demo`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from airloop.local.demo.followers import Follower
from airloop.model.context import ModelContext
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHAMPION
from airloop.store.ledger import LedgerEntry, record_batch
from airloop.store.schema import ROW_INDEX

pytestmark = pytest.mark.unit

MODEL = "flights_arrival_minutes"  # shipped: weekly, after flights_delay


def _settle(engine, model: str, keys: list[str]) -> None:
    for n, key in enumerate(keys):
        record_batch(engine, model, LedgerEntry(partition=key, status="passed", checksum=f"{n:064d}"))


def _days(first: date, last: date) -> list[str]:
    return [d.date().isoformat() for d in pd.date_range(first, last)]


@pytest.fixture
def follower(airloop_home) -> Follower:
    return Follower(api=None, ctx=ModelContext.load(MODEL), until=date(2013, 1, 31), report=lambda _: None)


def test_a_week_is_expected_once_its_upstream_days_have_settled(follower):
    engine = follower.ctx.warehouse
    assert follower._ingestible_missing() == []  # nothing upstream yet: nothing to wait for
    _settle(engine, "flights_delay", _days(date(2013, 1, 1), date(2013, 1, 19)))
    # The weeks of 6 and 13 January have all their days (and the evening before); the week of the 20th does not.
    assert follower._ingestible_missing() == ["2013-01-06", "2013-01-13"]
    _settle(engine, MODEL, ["2013-01-06"])
    assert follower._ingestible_missing() == ["2013-01-13"]
    # Past `until` nothing is expected, whatever has settled upstream.
    _settle(engine, "flights_delay", _days(date(2013, 1, 20), date(2013, 2, 28)))
    assert follower._ingestible_missing() == ["2013-01-13", "2013-01-20", "2013-01-27"]


def test_monitor_runs_are_due_once_their_windows_are_validated_and_scored(follower):
    # flights_arrival_minutes: weekly partitions, monitored on the 1st of each month over the four weeks before.
    engine = follower.ctx.warehouse
    follower.until = date(2013, 3, 31)
    follower.first_window_end = "2013-02-03"
    weeks = [d.date().isoformat() for d in pd.date_range("2013-01-06", "2013-03-24", freq="7D")]
    _settle(engine, MODEL, weeks)
    assert follower._due_intervals() == []  # validated, not scored
    # Not due yet, but still to come: the demo does not stop waiting for the model while their scoring is ahead.
    assert follower._due_intervals(require_scored=False) == [
        datetime(2013, 3, 1, tzinfo=UTC),
        datetime(2013, 4, 1, tzinfo=UTC),
    ]
    table = predictions_of(follower.ctx)
    row = {"alias": CHAMPION, ROW_INDEX: 0, "model": MODEL, "version": "1", "prediction": 1.0,
           "batch_checksum": "0" * 64, "scored_at": datetime.now(UTC)}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**row, "partition": p} for p in weeks if p >= "2013-01-20"])
    # 1 March: the weeks of 20 January to 17 February (35 days up to the last Sunday, the 24th); 1 April: the
    # weeks of 24 February to 24 March.
    assert follower._due_intervals() == [datetime(2013, 3, 1, tzinfo=UTC), datetime(2013, 4, 1, tzinfo=UTC)]
    follower.monitor_runs["2013-03-01T00:00:00+00:00"] = "run"
    assert follower._due_intervals() == [datetime(2013, 4, 1, tzinfo=UTC)]
    follower.until = date(2013, 3, 30)  # April's run is past the replay's end
    assert follower._due_intervals() == []


def test_a_quarantined_partition_does_not_stop_the_monitoring_of_the_year(follower):
    from dataclasses import replace

    from airloop.store.ledger import QUARANTINED

    engine = follower.ctx.warehouse
    follower.until = date(2013, 3, 31)
    follower.first_window_end = "2013-02-03"
    weeks = [d.date().isoformat() for d in pd.date_range("2013-01-06", "2013-03-24", freq="7D")]
    _settle(engine, MODEL, [w for w in weeks if w != "2013-02-10"])
    entry = LedgerEntry(partition="2013-02-10", status=QUARANTINED, checksum="q" * 64)
    record_batch(engine, MODEL, replace(entry, reason="a bad week"))
    table = predictions_of(follower.ctx)
    row = {"alias": CHAMPION, ROW_INDEX: 0, "model": MODEL, "version": "1", "prediction": 1.0,
           "batch_checksum": "0" * 64, "scored_at": datetime.now(UTC)}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**row, "partition": p} for p in weeks if p not in ("2013-02-10",)])
    assert follower._due_intervals() == [datetime(2013, 3, 1, tzinfo=UTC), datetime(2013, 4, 1, tzinfo=UTC)]
