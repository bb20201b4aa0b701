"""Alert channels that do not answer: a connection pointed at a port nothing listens on."""

from __future__ import annotations

import json
import socket

import pytest

from airloop.local.catcher import AlertCatcher


def unused_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_at_nothing(
    monkeypatch: pytest.MonkeyPatch, channel: str, catcher: AlertCatcher, sender: str
) -> None:
    """Point the ``email`` or ``slack`` connection (``AIRFLOW_CONN_AIRLOOP_SMTP`` / ``_SLACK``) at a dead port."""
    dead = unused_port()
    if channel == "email":
        conn = json.loads(catcher.smtp_connection(from_email=sender)) | {"port": dead}
        monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SMTP", json.dumps(conn))
    else:
        conn = json.loads(catcher.slack_connection()) | {"host": f"127.0.0.1:{dead}/services"}
        monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SLACK", json.dumps(conn))
