"""Partitions in time: a model's partition is the data interval of one run of its schedule, keyed by the interval's
start (UTC).

A schedule of a day or longer (daily, weekly, monthly: any cron whose ticks are a day or more apart) keys its
partitions by date, ``2013-01-07``; a shorter one (hourly, every 15 minutes) by minute, ``2013-01-07T05:00``. Keys
of one model sort as their starts do. Windows (training, holdout, monitoring, cooldown, the champion's age) are
measured in time between partition starts, never by counting partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache

#: How keys look: by date, or by minute.
DAY_KEY, MINUTE_KEY = "%Y-%m-%d", "%Y-%m-%dT%H:%M"
#: Presets Airflow expands to crons, with the period they stand for.
_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: A fixed point to read a cron's spacing from (a Monday, start of a month and a year).
_PROBE = datetime(2001, 1, 1, tzinfo=UTC)


def cron_of(schedule: str) -> str:
    """The cron expression of ``schedule`` (a cron, or one of Airflow's presets); raises ``ValueError`` naming
    what would be valid."""
    from croniter import croniter

    expression = _PRESETS.get(schedule.strip(), schedule.strip())
    if not croniter.is_valid(expression):
        raise ValueError(
            f"{schedule!r} is not a schedule partitions can follow: a cron expression (e.g. '0 * * * *') or one of "
            f"{', '.join(_PRESETS)}"
        )
    return expression


@cache
def _probe(schedule: str) -> tuple[datetime, ...]:
    """The schedule's first 60 ticks after :data:`_PROBE`: what its spacing is read from."""
    ticks = _ticks(schedule, _PROBE)
    return tuple(next(ticks) for _ in range(60))


@cache
def key_format(schedule: str) -> str:
    """:data:`DAY_KEY` for a schedule whose runs are a day or more apart, :data:`MINUTE_KEY` otherwise."""
    times = _probe(schedule)
    shortest = min(b - a for a, b in zip(times, times[1:], strict=False))
    return (
        DAY_KEY
        if shortest >= timedelta(days=1) and all(t.hour == t.minute == 0 for t in times)
        else MINUTE_KEY
    )


@cache
def longest_interval(schedule: str) -> timedelta:
    """The longest data interval of ``schedule`` (over a probe of its next runs: 31 days for monthly)."""
    times = _probe(schedule)
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def partition_key(start: datetime, schedule: str) -> str:
    """The key of the partition whose data interval starts at ``start``."""
    return _utc(start).strftime(key_format(schedule))


def partition_start(key: str) -> datetime:
    """When the partition keyed ``key`` starts (UTC), whichever way it is keyed."""
    moment = datetime.fromisoformat(key)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def last_boundary(schedule: str, moment: datetime) -> datetime:
    """The latest tick of ``schedule`` at or before ``moment``: where the last complete partition ends."""
    from croniter import croniter

    return croniter(cron_of(schedule), _utc(moment) + timedelta(microseconds=1)).get_prev(datetime)


def complete_partitions(schedule: str, start: datetime, end: datetime) -> list[str]:
    """The keys of the partitions whose whole interval lies in ``[start, end]`` (each starts at or after
    ``start`` and its next tick is at or before ``end``), in order."""
    fmt, ticks = key_format(schedule), _ticks(schedule, start)
    keys, moment = [], next(ticks)
    while (following := next(ticks)) <= _utc(end):
        keys.append(moment.strftime(fmt))
        moment = following
    return keys


def partitions_starting(schedule: str, start: datetime, end: datetime) -> list[str]:
    """The keys of the partitions whose intervals start in ``[start, end)``, in order."""
    fmt, keys = key_format(schedule), []
    for moment in _ticks(schedule, start):
        if moment >= _utc(end):
            return keys
        keys.append(moment.strftime(fmt))
    return keys


def _ticks(schedule: str, start: datetime) -> Iterator[datetime]:
    """The schedule's ticks at or after ``start``, in UTC, without end."""
    from croniter import croniter

    ticks = croniter(cron_of(schedule), _utc(start) - timedelta(microseconds=1))
    while True:
        yield ticks.get_next(datetime).astimezone(UTC)


def next_partition(key: str, schedule: str) -> str:
    """The key of the partition after partition ``key`` of ``schedule``."""
    from croniter import croniter

    following = croniter(cron_of(schedule), partition_start(key)).get_next(datetime)
    return partition_key(following, schedule)


def partition_interval(key: str, schedule: str) -> tuple[datetime, datetime]:
    """The data interval ``[start, end)`` of partition ``key`` of ``schedule``, in UTC."""
    return partition_start(key), partition_start(next_partition(key, schedule))


def _utc(moment: datetime) -> datetime:
    """``moment`` as a plain aware ``datetime`` in UTC (a naive one is taken as UTC). Pendulum's ``DateTime``, which
    Airflow hands to tasks, becomes a ``datetime``: croniter returns naive times for it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(moment.timestamp(), UTC)


def hours_between(earlier: str, later: str) -> float:
    """The hours from the start of partition ``earlier`` to the start of ``later``."""
    return (partition_start(later) - partition_start(earlier)) / timedelta(hours=1)
