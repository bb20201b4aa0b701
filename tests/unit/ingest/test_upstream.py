"""Chained models: a SQL source waits until the models it reads after have settled the run's interval."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from airloop.core.spec import load_spec, load_specs
from airloop.ingest.upstream import describe_unsettled, expected_upstream, unsettled_upstream
from airloop.store.db import open_warehouse
from airloop.store.ledger import QUARANTINED, LedgerEntry, record_batch

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FLIGHTS = ROOT / "config" / "models" / "flights_delay.yaml"
WEEK = (datetime(2013, 1, 6, tzinfo=UTC), datetime(2013, 1, 13, tzinfo=UTC))


@pytest.fixture
def daily():
    return load_spec(FLIGHTS)


def _settle(engine, model: str, days: list[str], status: str = "passed") -> None:
    for n, day in enumerate(days):
        entry = LedgerEntry(partition=day, status=status, checksum=f"{n:064d}", validation_result_id=f"r{n}")
        record_batch(engine, model, entry)


def test_a_week_waits_for_each_of_its_days_passed_or_quarantined(tmp_path, daily):
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    # The days starting in the week, and the one before: its New York evening is the week's first hours in UTC.
    week = [f"2013-01-{d:02d}" for d in range(5, 13)]
    assert expected_upstream(daily, *WEEK) == week
    assert unsettled_upstream(engine, [daily], *WEEK) == {"flights_delay": week}
    _settle(engine, "flights_delay", week[:4])
    _settle(engine, "flights_delay", week[5:6], QUARANTINED)  # settled: it will not arrive by waiting
    missing = unsettled_upstream(engine, [daily], *WEEK)
    assert missing == {"flights_delay": ["2013-01-09", "2013-01-11", "2013-01-12"]}
    assert describe_unsettled(missing) == "flights_delay: 2013-01-09, 2013-01-11, 2013-01-12"
    _settle(engine, "flights_delay", ["2013-01-09", "2013-01-11", "2013-01-12"])
    assert unsettled_upstream(engine, [daily], *WEEK) == {}
    engine.dispose()


def test_days_outside_the_upstreams_own_dates_are_not_waited_for(daily):
    # The last week of 2013 runs into 2014, where flights_delay (end_date 2013-12-31) has no partitions.
    last_week = (datetime(2013, 12, 29, tzinfo=UTC), datetime(2014, 1, 5, tzinfo=UTC))
    assert expected_upstream(daily, *last_week) == ["2013-12-28", "2013-12-29", "2013-12-30", "2013-12-31"]
    early = daily.model_copy(update={"start_date": date(2013, 1, 8)})
    assert expected_upstream(early, *WEEK) == [f"2013-01-{d:02d}" for d in range(8, 13)]


def test_describe_names_at_most_five_partitions_per_model():
    keys = [f"2013-01-{d:02d}" for d in range(1, 9)]
    assert (
        describe_unsettled({"m": keys})
        == "m: 2013-01-01, 2013-01-02, 2013-01-03, 2013-01-04, 2013-01-05 and 3 more"
    )


def test_after_must_name_another_model_of_the_folder(tmp_path):
    raw = yaml.safe_load(FLIGHTS.read_text())
    (tmp_path / "flights_delay.yaml").write_text(FLIGHTS.read_text())
    chained = {
        **raw,
        "name": "chained",
        "source": {
            "kind": "sql",
            "conn_id": "airloop_warehouse",
            "query": "SELECT * FROM flights_delay_batches WHERE time_hour >= :start AND time_hour < :end",
            "after": ["flights_delay"],
        },
    }
    (tmp_path / "chained.yaml").write_text(yaml.safe_dump(chained))
    folder = load_specs(tmp_path)
    assert [s.name for s in folder.specs] == ["chained", "flights_delay"] and not folder.errors
    (tmp_path / "orphan.yaml").write_text(
        yaml.safe_dump(
            {**chained, "name": "orphan", "source": {**chained["source"], "after": ["nope", "orphan"]}}
        )
    )
    folder = load_specs(tmp_path)
    assert [s.name for s in folder.specs] == ["chained", "flights_delay"]
    (error,) = folder.errors
    assert str(error).startswith(
        f"{tmp_path / 'orphan.yaml'}: field 'source.after': 'nope', 'orphan' is not another"
    )


def test_a_chain_on_a_dropped_model_or_a_cycle_is_each_specs_own_error(tmp_path):
    raw = yaml.safe_load(FLIGHTS.read_text())
    source = {
        "kind": "sql",
        "conn_id": "airloop_warehouse",
        "query": "SELECT * FROM flights_delay_batches WHERE time_hour >= :start AND time_hour < :end",
    }

    def write(name: str, after: list[str]) -> None:
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({**raw, "name": name, "source": {**source, "after": after}})
        )

    (tmp_path / "flights_delay.yaml").write_text(FLIGHTS.read_text())
    write("orphan", ["nope"])  # unknown: dropped
    write("on_orphan", ["orphan"])  # waits on a dropped model: dropped in turn
    write("ping", ["pong"])
    write("pong", ["ping"])  # a cycle: both dropped
    write("fine", ["flights_delay"])
    folder = load_specs(tmp_path)
    assert [s.name for s in folder.specs] == ["fine", "flights_delay"]
    errors = sorted(str(e) for e in folder.errors)
    assert len(errors) == 4
    assert any("on_orphan.yaml: field 'source.after': 'orphan' is not another model" in e for e in errors)
    assert any(
        "ping.yaml: field 'source.after': the models wait on each other (ping -> pong -> ping)" in e
        for e in errors
    )
    assert any("pong.yaml" in e and "(pong -> ping -> pong)" in e for e in errors)
