from __future__ import annotations

from datetime import date

import pytest

from airloop.retraining import retrain_choice

pytestmark = pytest.mark.unit


def _event(event_id: int, last_day: str) -> dict:
    return {"id": event_id, "partition": last_day, "payload": {}}


def test_nothing_pending_means_no_retrain():
    choice = retrain_choice([], None, 72)
    assert choice.event is None and choice.reason == "no pending drift event"


def test_within_cooldown_waits():
    choice = retrain_choice([_event(7, "2013-05-10")], date(2013, 5, 8), 72)
    assert choice.event is None
    assert "within the 72 h cooldown" in choice.reason and "2013-05-08" in choice.reason


def test_cooldown_is_measured_in_data_time_between_windows():
    assert retrain_choice([_event(7, "2013-05-11")], date(2013, 5, 8), 72).event["id"] == 7
    assert retrain_choice([_event(7, "2013-05-10")], date(2013, 5, 8), 48).event["id"] == 7


def test_two_pending_events_give_one_retrain_on_the_newest():
    choice = retrain_choice([_event(3, "2013-06-01"), _event(4, "2013-06-08")], None, 72)
    assert choice.event["id"] == 4
    assert "1 older pending event(s) handled with it" in choice.reason


def test_first_retrain_has_no_cooldown():
    assert retrain_choice([_event(1, "2013-03-07")], None, 10_000).event["id"] == 1
