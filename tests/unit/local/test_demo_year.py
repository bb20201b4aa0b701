"""The year replay's calendar and its table (the replay itself runs on the stack: `make demo`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from airloop.local.demo.months import format_table
from airloop.local.demo.year import plan_weeks

pytestmark = pytest.mark.unit


def test_weeks_end_on_saturday_and_are_monitored_on_the_sunday_after():
    weeks = plan_weeks(date(2013, 3, 1), date(2013, 12, 31))
    # 1-2 March (Friday, Saturday) are no whole week: they join the next one, monitored on 10 March (3-9 March).
    assert weeks[0].days[0] == date(2013, 3, 1) and weeks[0].days[-1] == date(2013, 3, 9)
    assert weeks[0].monitor_at == datetime(2013, 3, 10, tzinfo=UTC)
    whole = [w for w in weeks if w.monitor_at is not None]
    assert len(whole) == 43 and whole[-1].monitor_at == datetime(2013, 12, 29, tzinfo=UTC)
    assert all(w.days[-1].weekday() == 5 and len(w.days) >= 7 for w in whole)
    # The last days (29-31 December) are a part week: landed and scored, not monitored.
    assert weeks[-1].monitor_at is None and weeks[-1].days == [date(2013, 12, d) for d in (29, 30, 31)]
    every_day = [d for w in weeks for d in w.days]
    assert every_day == sorted(set(every_day)) and len(every_day) == 306


def test_a_short_replay_has_no_monitored_week():
    weeks = plan_weeks(date(2013, 3, 1), date(2013, 3, 5))
    assert [w.monitor_at for w in weeks] == [None]


def test_the_table_shows_the_gain_over_the_first_champion():
    row = {
        "month": "Jul", "rows": 29425, "weeks_monitored": 4, "weeks_drifted": 1, "drift_share_max": 0.375,
        "retrains": 1, "promoted": ["4"], "serving_versions": ["3", "4"], "labelled_rows": 28000,
        "metric": "roc_auc", "serving": 0.7251, "first_champion": 0.6612,
    }  # fmt: skip
    text = format_table([row, {**row, "month": "Aug", "serving": None, "drift_share_max": None}], "1")
    header, _, july, august = text.splitlines()
    assert "AUC v1" in header
    assert july.split() == [
        "Jul",
        "29425",
        "4",
        "1",
        "0.38",
        "1",
        "v4",
        "v3,v4",
        "0.7251",
        "0.6612",
        "+0.0639",
    ]
    assert august.split()[-3:] == ["-", "0.6612", "-"] and august.split()[4] == "-"
    # The primary metric is headed as the spec's task labels it.
    assert "AP serving" in format_table([row], "1", metric="AP").splitlines()[0]
