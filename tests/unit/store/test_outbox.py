"""The alert outbox in the event log, on SQLite and PostgreSQL: an alert is queued once, each channel's delivery is
recorded once, and what a channel still owes is listed until it is delivered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airloop.core.events import AlertQueuedPayload, AlertSentPayload, EventKind
from airloop.store import db
from airloop.store.events import events_of
from airloop.store.outbox import delivered_channels, queue_alert, record_delivery, undelivered_alerts

pytestmark = pytest.mark.unit


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = (
        f"sqlite:///{tmp_path}/w.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    engine = db.open_warehouse(url)
    yield engine
    engine.dispose()


def _queued(key: str, channels=("email", "slack")) -> AlertQueuedPayload:
    return AlertQueuedPayload(
        key=key,
        channels=list(channels),
        subject=f"subject of {key}",
        text="t",
        html="<p>h</p>",
        slack_text="s",
        dag_id="m_ingest",
        run_id="r1",
    )


def _sent(channel: str, subject: str = "s") -> AlertSentPayload:
    return AlertSentPayload(
        channel=channel, conn_id=f"{channel}_conn", subject=subject, dag_id=None, run_id=None
    )


def test_a_queued_alert_is_owed_by_each_channel_until_it_delivers(engine):
    key = "alert:quarantine:m:2013-01-02:abc:"
    assert queue_alert(engine, "m", _queued(key), partition="2013-01-02") is True
    assert queue_alert(engine, "m", _queued(key), partition="2013-01-02") is False  # a retry

    [owed] = undelivered_alerts(engine)
    assert (owed.model, owed.partition, owed.missing) == ("m", "2013-01-02", ("email", "slack"))
    assert owed.alert == _queued(key)

    assert record_delivery(engine, "m", key, _sent("email")) is True
    assert record_delivery(engine, "m", key, _sent("email")) is False
    assert delivered_channels(engine, key, ["email", "slack"]) == {"email"}
    [owed] = undelivered_alerts(engine, "m")
    assert owed.missing == ("slack",)

    record_delivery(engine, "m", key, _sent("slack"))
    assert undelivered_alerts(engine) == []
    kinds = [e.kind for e in events_of(engine, "m")]
    assert kinds == [EventKind.ALERT_QUEUED, EventKind.ALERT_SENT, EventKind.ALERT_SENT]


def test_owed_alerts_are_listed_per_model_oldest_first_and_by_age(engine):
    queue_alert(engine, "a", _queued("alert:drift:a:w1:"))
    queue_alert(engine, "b", _queued("alert:drift:b:w1:", channels=["slack"]))
    queue_alert(engine, "a", _queued("alert:drift:a:w2:"))

    assert [o.alert.key for o in undelivered_alerts(engine)] == [
        "alert:drift:a:w1:",
        "alert:drift:b:w1:",
        "alert:drift:a:w2:",
    ]
    assert [o.alert.key for o in undelivered_alerts(engine, "a")] == [
        "alert:drift:a:w1:",
        "alert:drift:a:w2:",
    ]
    assert undelivered_alerts(engine, queued_before=datetime.now(UTC) - timedelta(minutes=5)) == []
    assert len(undelivered_alerts(engine, queued_before=datetime.now(UTC) + timedelta(minutes=5))) == 3


def test_a_delivery_of_one_alert_never_settles_another(engine):
    """Keys are compared whole: the delivery of ``...:w1:`` by e-mail owes nothing to ``...:w1:x:``."""
    queue_alert(engine, "a", _queued("alert:drift:a:w1:", channels=["email"]))
    queue_alert(engine, "a", _queued("alert:drift:a:w1:x:", channels=["email"]))
    record_delivery(engine, "a", "alert:drift:a:w1:", _sent("email"))
    assert [o.alert.key for o in undelivered_alerts(engine)] == ["alert:drift:a:w1:x:"]
    assert delivered_channels(engine, "alert:drift:a:w1:x:", ["email", "slack"]) == set()
    # A model name with SQL wildcards in it (_ and %) matches itself only.
    record_delivery(engine, "a", "alert:drift:a_b:w1:", _sent("email"))
    assert delivered_channels(engine, "alert:drift:aXb:w1:", ["email"]) == set()
    assert delivered_channels(engine, "alert:drift:a", ["email"]) == set()
