"""Real alert delivery: the providers' SMTP and Slack webhook notifiers against a real local catcher, no mocks.

Connections come from ``AIRFLOW_CONN_<ID>`` environment variables, as in a deployment that keeps them out of
the metadata database. Airflow is imported only once ``AIRFLOW_HOME`` points at a temporary folder, so the tests
never write into ``~/airflow``.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from channels import point_at_nothing, unused_port

from airloop.alerts import Alert, quarantine_alert
from airloop.core.errors import AirloopError
from airloop.core.spec import AlertsSpec
from airloop.local.catcher import AlertCatcher

pytestmark = pytest.mark.integration

SENDER = "airloop@example.com"
RECIPIENTS = ["mlops-oncall@example.com", "data-team@example.com"]
SPEC = AlertsSpec.model_validate(
    {"email": {"conn_id": "airloop_smtp", "to": RECIPIENTS}, "slack": {"conn_id": "airloop_slack"}}
)


@pytest.fixture(scope="module")
def notify(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        yield importlib.import_module("airloop.airflow.notify")


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[AlertCatcher]:
    with AlertCatcher(tmp_path / "caught") as running:
        yield running


@pytest.fixture
def connections(catcher: AlertCatcher, monkeypatch: pytest.MonkeyPatch) -> AlertCatcher:
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SMTP", catcher.smtp_connection(from_email=SENDER))
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SLACK", catcher.slack_connection())
    return catcher


@pytest.fixture
def alert() -> Alert:
    return quarantine_alert(
        model="flights_delay",
        partition="2013-01-05",
        reason="column arr_delay: 12 values above max 1800 <{{ ds }}>",
        rows=812,
        files=["part-0.parquet"],
        quarantine_path="/data/quarantine/flights_delay/date=2013-01-05",
        links={"Airflow run": "http://localhost:8080/dags/flights_delay_ingest/runs/r1"},
    )


@pytest.mark.parametrize(("down", "up"), [("email", "slack"), ("slack", "email")])
def test_a_channel_whose_server_is_down_fails_alone(
    notify: ModuleType,
    connections: AlertCatcher,
    alert: Alert,
    monkeypatch: pytest.MonkeyPatch,
    down: str,
    up: str,
) -> None:
    point_at_nothing(monkeypatch, down, connections, SENDER)
    results = {r.channel: r for r in notify.send_alert(SPEC, alert)}
    assert not results[down].ok
    assert "Connection refused" in results[down].error
    assert results[up].ok and results[up].error is None
    delivered = connections.emails() if up == "email" else connections.webhooks()
    assert len(delivered) == 1


def test_raise_if_failed_names_the_failed_channel_and_connection(
    notify: ModuleType, connections: AlertCatcher, alert: Alert, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at_nothing(monkeypatch, "slack", connections, SENDER)
    results = notify.send_alert(SPEC, alert)
    with pytest.raises(
        notify.AlertDeliveryError, match=r"not delivered by slack: slack \(connection 'airloop_slack'\)"
    ):
        notify.raise_if_failed(results)
    assert issubclass(notify.AlertDeliveryError, AirloopError)


def test_a_missing_connection_fails_its_channel(
    notify: ModuleType, connections: AlertCatcher, alert: Alert, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AIRLOOP_SMTP")
    results = {r.channel: r for r in notify.send_alert(SPEC, alert)}
    assert not results["email"].ok
    assert "SMTP connection is not found" in results["email"].error
    assert results["slack"].ok


def test_unknown_channel_in_skip_is_rejected(notify: ModuleType, alert: Alert) -> None:
    with pytest.raises(ValueError, match="unknown channels \\['e-mail'\\]"):
        notify.send_alert(SPEC, alert, skip=["e-mail"])


def test_skipped_channels_are_not_sent_again(
    notify: ModuleType, connections: AlertCatcher, alert: Alert
) -> None:
    results = notify.send_alert(SPEC, alert, skip={"email"})
    assert [(r.channel, r.ok) for r in results] == [("slack", True)]
    assert connections.emails() == []
    assert len(connections.webhooks()) == 1


def test_alert_arrives_by_email_and_slack_verbatim(
    notify: ModuleType, connections: AlertCatcher, alert: Alert
) -> None:
    results = notify.send_alert(SPEC, alert, context={})
    notify.raise_if_failed(results)
    assert [(r.channel, r.conn_id, r.ok) for r in results] == [
        ("email", "airloop_smtp", True),
        ("slack", "airloop_slack", True),
    ]

    [mail] = connections.emails()
    assert mail["Subject"] == alert.subject
    assert mail["From"] == SENDER
    assert [a.strip() for a in mail["To"].split(",")] == RECIPIENTS
    html = mail.get_body(("html",)).get_content()
    assert html == alert.html
    # Template syntax from the data is neither rendered nor lost.
    assert "&lt;{{ ds }}&gt;" in html

    [webhook] = connections.webhooks()
    assert webhook["text"] == alert.slack_text
    assert webhook["unfurl_links"] is False


def test_catcher_runs_as_a_process_until_sigterm(tmp_path: Path) -> None:
    smtp_port, http_port = unused_port(), unused_port()
    args = ["--dir", str(tmp_path), "--smtp-port", str(smtp_port), "--http-port", str(http_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "airloop.local.catcher", *args], stderr=subprocess.PIPE, text=True
    )
    try:
        body = json.dumps({"text": "from another process"}).encode()
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http_port}/services/x", data=body, timeout=2
                ) as r:
                    assert r.read() == b"ok"
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert f"SMTP on 127.0.0.1:{smtp_port}" in proc.stderr.read()
    assert AlertCatcher(tmp_path).webhooks() == [{"text": "from another process"}]


def test_a_stopped_catcher_starts_again_on_its_ports_and_the_channels_answer_again(
    notify: ModuleType, connections: AlertCatcher, alert: Alert
) -> None:
    ports = (connections.smtp_port, connections.http_port)
    connections.stop()
    assert {r.channel: r.ok for r in notify.send_alert(SPEC, alert)} == {"email": False, "slack": False}
    connections.start()
    assert (connections.smtp_port, connections.http_port) == ports
    assert {r.channel: r.ok for r in notify.send_alert(SPEC, alert)} == {"email": True, "slack": True}
    assert len(connections.emails()) == 1 and len(connections.webhooks()) == 1
