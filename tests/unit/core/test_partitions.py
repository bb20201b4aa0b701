"""Partitions follow the schedule: keys, starts and windows for hourly, daily, weekly and monthly cadences."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airloop.core.partitions import (
    DAY_KEY,
    MINUTE_KEY,
    complete_partitions,
    cron_of,
    hours_between,
    key_format,
    last_boundary,
    partition_key,
    partition_start,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("schedule", "fmt"),
    [
        ("@hourly", MINUTE_KEY),
        ("*/15 * * * *", MINUTE_KEY),
        (
            "0 6 * * *",
            MINUTE_KEY,
        ),  # daily, but at 06:00: a date alone would not say when the partition starts
        ("@daily", DAY_KEY),
        ("0 0 * * *", DAY_KEY),
        ("@weekly", DAY_KEY),
        ("0 0 * * 1", DAY_KEY),
        ("@monthly", DAY_KEY),
        ("@yearly", DAY_KEY),
    ],
)
def test_keys_are_dates_for_runs_a_day_apart_at_midnight_and_minutes_otherwise(schedule, fmt):
    assert key_format(schedule) == fmt


def test_a_key_names_the_start_of_its_interval_in_utc_and_reads_back():
    from zoneinfo import ZoneInfo

    start = datetime(2013, 1, 7, 5, tzinfo=UTC)
    assert partition_key(start, "@hourly") == "2013-01-07T05:00"
    assert partition_key(start.astimezone(ZoneInfo("America/New_York")), "@hourly") == "2013-01-07T05:00"
    assert partition_key(datetime(2013, 1, 7, tzinfo=UTC), "@weekly") == "2013-01-07"
    assert partition_start("2013-01-07T05:00") == start
    assert partition_start("2013-01-07") == datetime(2013, 1, 7, tzinfo=UTC)
    assert hours_between("2013-01-06T23:00", "2013-01-07") == 1
    assert hours_between("2013-01-01", "2013-02-01") == 31 * 24


def test_keys_of_one_schedule_sort_as_their_starts_do():
    keys = complete_partitions(
        "@hourly", datetime(2013, 1, 1, 20, tzinfo=UTC), datetime(2013, 1, 2, 4, tzinfo=UTC)
    )
    assert keys == sorted(keys, key=partition_start) == sorted(keys)
    assert len(keys) == 8


def test_complete_partitions_are_those_wholly_inside_the_span():
    jan = datetime(2013, 1, 1, tzinfo=UTC)
    # Weekly on Sundays (Airflow's @weekly): the weeks starting 6, 13 and 20 January end by the 27th.
    assert complete_partitions("@weekly", jan, datetime(2013, 1, 27, tzinfo=UTC)) == [
        "2013-01-06",
        "2013-01-13",
        "2013-01-20",
    ]
    # The week starting the 27th ends 3 February: not complete on 2 February.
    assert complete_partitions("@weekly", jan, datetime(2013, 2, 2, tzinfo=UTC))[-1] == "2013-01-20"
    assert complete_partitions("@monthly", jan, datetime(2013, 4, 1, tzinfo=UTC)) == [
        "2013-01-01",
        "2013-02-01",
        "2013-03-01",
    ]
    assert complete_partitions("@daily", jan, datetime(2013, 1, 1, 23, tzinfo=UTC)) == []
    assert complete_partitions("@hourly", jan, datetime(2013, 1, 1, 2, tzinfo=UTC)) == [
        "2013-01-01T00:00",
        "2013-01-01T01:00",
    ]


def test_the_last_boundary_is_the_latest_tick_at_or_before_the_moment():
    assert last_boundary("@daily", datetime(2013, 3, 3, 6, tzinfo=UTC)) == datetime(2013, 3, 3, tzinfo=UTC)
    assert last_boundary("@daily", datetime(2013, 3, 3, tzinfo=UTC)) == datetime(2013, 3, 3, tzinfo=UTC)
    assert last_boundary("@monthly", datetime(2013, 3, 31, tzinfo=UTC)) == datetime(2013, 3, 1, tzinfo=UTC)
    assert last_boundary("@hourly", datetime(2013, 3, 3, 6, 59, tzinfo=UTC)) == datetime(
        2013, 3, 3, 6, tzinfo=UTC
    )


def test_a_schedule_partitions_cannot_follow_is_refused_with_what_would_be_valid():
    assert cron_of("@weekly") == "0 0 * * 0"
    with pytest.raises(ValueError, match=r"'every tuesday' is not a schedule .* @hourly, @daily"):
        cron_of("every tuesday")


def test_the_next_partition_follows_the_schedule():
    from airloop.core.partitions import next_partition

    assert next_partition("2013-01-31", "@daily") == "2013-02-01"
    assert next_partition("2013-01-06", "@weekly") == "2013-01-13"
    assert next_partition("2013-01-01", "@monthly") == "2013-02-01"
    assert next_partition("2013-01-01T23:00", "@hourly") == "2013-01-02T00:00"


def test_airflows_pendulum_datetimes_are_taken_as_the_instants_they_are():
    import pendulum

    end = pendulum.datetime(2013, 3, 3, 6, tz="UTC")
    assert last_boundary("@daily", end) == datetime(2013, 3, 3, tzinfo=UTC)
    assert complete_partitions("@daily", end.subtract(days=2), end) == ["2013-03-02"]
    local = pendulum.datetime(2013, 3, 3, 1, tz="America/New_York")  # 06:00 UTC
    assert partition_key(local, "@hourly") == "2013-03-03T06:00"
    assert last_boundary("@hourly", local) == datetime(2013, 3, 3, 6, tzinfo=UTC)
