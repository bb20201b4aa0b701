"""Deliver an :class:`~airloop.alerts.Alert` through the Airflow providers' notifiers: e-mail and Slack.

Channels come from the model spec by connection id (``AlertsSpec``); hosts, senders and tokens live in the
Airflow connections. Each channel is tried on its own, so a Slack outage never swallows the e-mail. A task calls
:func:`send_alert`, records which channels delivered, then :func:`raise_if_failed`: the task fails, and its
retry passes the delivered channels as ``skip`` so nobody is alerted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import literal
from airflow.sdk.bases.notifier import BaseNotifier

from airloop.alerts import Alert
from airloop.core.errors import AirloopError
from airloop.core.spec import AlertsSpec

log = logging.getLogger(__name__)

EMAIL = "email"
SLACK = "slack"
CHANNELS = (EMAIL, SLACK)


@dataclass(frozen=True)
class ChannelResult:
    """The outcome of one channel: ``error`` says why it failed (never a secret from the connection)."""

    channel: str
    conn_id: str
    ok: bool
    error: str | None = None


class AlertDeliveryError(AirloopError):
    """At least one alert channel failed; the task should fail and retry the failed channels only."""

    def __init__(self, failed: list[ChannelResult], note: str = "") -> None:
        self.failed = failed
        detail = "; ".join(f"{r.channel} (connection {r.conn_id!r}): {r.error}" for r in failed)
        super().__init__(f"alert not delivered by {', '.join(r.channel for r in failed)}: {detail}{note}")


def send_alert(
    alerts: AlertsSpec,
    alert: Alert,
    context: Mapping[str, Any] | None = None,
    *,
    skip: Collection[str] = (),
) -> list[ChannelResult]:
    """Send ``alert`` by every channel configured in ``alerts`` except those named in ``skip``.

    ``context`` is the Airflow task context when there is one; outside a task an empty context is enough,
    because the alert's text is passed as a literal and never rendered as a Jinja template. Returns one result
    per channel attempted; failures are returned, not raised (see :func:`raise_if_failed`).
    """
    unknown = set(skip) - set(CHANNELS)
    if unknown:
        raise ValueError(f"skip names unknown channels {sorted(unknown)}; known: {', '.join(CHANNELS)}")
    results = []
    for channel, conn_id, make_notifier in _channels(alerts, alert):
        if channel in skip:
            continue
        try:
            # A copy: the notifier merges its own fields into the context it is given.
            make_notifier()(dict(context or {}))
        except Exception as exc:  # any failure of one channel is reported, the next still runs
            log.warning("alert %r not sent by %s (connection %r): %s", alert.subject, channel, conn_id, exc)
            results.append(ChannelResult(channel, conn_id, ok=False, error=f"{type(exc).__name__}: {exc}"))
        else:
            log.info("alert %r sent by %s (connection %r)", alert.subject, channel, conn_id)
            results.append(ChannelResult(channel, conn_id, ok=True))
    return results


def raise_if_failed(results: list[ChannelResult], note: str = "") -> None:
    """Raise :class:`AlertDeliveryError` naming every failed channel (and ending with ``note``), if any failed."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise AlertDeliveryError(failed, note)


def configured_channels(alerts: AlertsSpec) -> list[str]:
    """The channels ``alerts`` configures, in delivery order."""
    return [channel for channel, conn in ((EMAIL, alerts.email), (SLACK, alerts.slack)) if conn is not None]


def _channels(alerts: AlertsSpec, alert: Alert) -> list[tuple[str, str, Callable[[], BaseNotifier]]]:
    # The providers' notifiers (and their HTTP and mail clients) are imported when an alert is sent, not when a
    # DAG file that may send one is parsed. Notifiers are built lazily so that a bad argument fails its own
    # channel, not the loop.
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    channels: list[tuple[str, str, Callable[[], BaseNotifier]]] = []
    if alerts.email is not None:
        email = alerts.email
        channels.append(
            (
                EMAIL,
                email.conn_id,
                lambda: SmtpNotifier(
                    smtp_conn_id=email.conn_id,
                    # literal(): notifiers render their fields as Jinja, and a reason or file name taken
                    # from the data may hold "{{"; the alert is already final text.
                    to=literal(list(email.to)),
                    # None: the sender is the connection's ``from_email`` extra, set per environment.
                    from_email=None,
                    subject=literal(alert.subject),
                    html_content=literal(alert.html),
                ),
            )
        )
    if alerts.slack is not None:
        slack = alerts.slack
        channels.append(
            (
                SLACK,
                slack.conn_id,
                lambda: SlackWebhookNotifier(
                    slack_webhook_conn_id=slack.conn_id,
                    text=literal(alert.slack_text),
                    unfurl_links=False,
                    # No client-side retries: Airflow retries the task, and slack_sdk's retry log line
                    # would print the webhook URL, which holds the token.
                    retry_handlers=[],
                ),
            )
        )
    return channels
