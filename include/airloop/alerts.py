"""Alert messages: what happened, to which model and batch, and where to look, for e-mail and Slack.

Pure composition, no delivery: :mod:`airloop.airflow.notify` sends an :class:`Alert` through Airflow's notifiers.
Every value that comes from data (reasons, file names, paths) is escaped for the channel that shows it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Files listed by name in one message; a rejected backfill can hold hundreds.
MAX_FILES_LISTED = 10
#: Subjects longer than this are cut: mail clients and Slack previews show one short line.
MAX_SUBJECT_CHARS = 150


@dataclass(frozen=True)
class Alert:
    """One alert rendered for every channel.

    ``subject`` is the e-mail subject (one line), ``html`` the e-mail body, ``slack_text`` Slack ``mrkdwn``, and
    ``text`` the plain-text form for logs and the event log.
    """

    subject: str
    text: str
    html: str
    slack_text: str


def quarantine_alert(
    model: str,
    partition: str,
    reason: str,
    rows: int | None,
    files: list[str],
    quarantine_path: str,
    links: dict[str, str],
) -> Alert:
    """The alert for a batch rejected by validation and kept in quarantine.

    ``reason`` names the failed column or check; ``rows`` is ``None`` when the batch could not be read;
    ``links`` maps a label (e.g. ``"Airflow run"``, ``"Data Docs"``) to a URL.
    """
    facts = [
        ("Model", model),
        ("Partition", partition),
        ("Reason", reason),
        ("Rows", "unknown" if rows is None else f"{rows:,}"),
        ("Files", _file_list(files)),
        ("Kept in", quarantine_path),
    ]
    return _compose(
        subject=f"[airloop] {model}: batch {partition} quarantined: {reason}",
        headline=f"Batch {partition} of model {model} was rejected by validation and quarantined.",
        facts=facts,
        links=links,
    )


def _file_list(files: Sequence[str]) -> str:
    if not files:
        return "none"
    shown = ", ".join(files[:MAX_FILES_LISTED])
    hidden = len(files) - MAX_FILES_LISTED
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _compose(
    *, subject: str, headline: str, facts: Sequence[tuple[str, str]], links: Mapping[str, str]
) -> Alert:
    return Alert(
        subject=_one_line(subject, MAX_SUBJECT_CHARS),
        text=_text(headline, facts, links),
        html=_html(headline, facts, links),
        slack_text=_slack(headline, facts, links),
    )


def _one_line(value: str, limit: int) -> str:
    # A newline in a header would end it (or be rejected by the mail library): a reason may span lines.
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text(headline: str, facts: Sequence[tuple[str, str]], links: Mapping[str, str]) -> str:
    lines = [headline, ""]
    lines += [f"{label}: {value}" for label, value in facts]
    if links:
        lines += ["", *(f"{label}: {url}" for label, url in links.items())]
    return "\n".join(lines) + "\n"


def _html(headline: str, facts: Sequence[tuple[str, str]], links: Mapping[str, str]) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><th align="left" valign="top" style="padding-right:1em">{esc(label)}</th>'
        f'<td style="white-space:pre-wrap">{esc(value)}</td></tr>'
        for label, value in facts
    )
    parts = [f"<p>{esc(headline)}</p>", f"<table>{rows}</table>"]
    if links:
        items = "".join(f"<li>{_html_link(label, url)}</li>" for label, url in links.items())
        parts.append(f"<ul>{items}</ul>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def _html_link(label: str, url: str) -> str:
    # Only web links become anchors: a javascript: or data: URL in an alert is never clickable.
    if urlsplit(url).scheme not in ("http", "https"):
        return f"{html.escape(label)}: {html.escape(url)}"
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>'


def _slack(headline: str, facts: Sequence[tuple[str, str]], links: Mapping[str, str]) -> str:
    lines = [f":rotating_light: *{_slack_escape(headline)}*"]
    lines += [f"*{_slack_escape(label)}:* {_slack_escape(value)}" for label, value in facts]
    if links:
        lines.append(" | ".join(_slack_link(label, url) for label, url in links.items()))
    return "\n".join(lines)


def _slack_escape(value: str) -> str:
    # Slack's mrkdwn reserves exactly these three: <...> would become a link or a mention.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(label: str, url: str) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        return f"{_slack_escape(label)}: {_slack_escape(url)}"
    # "|" would end the URL part of <url|label>; Slack accepts it percent-encoded.
    return f"<{_slack_escape(url).replace('|', '%7C')}|{_slack_escape(label).replace('|', '/')}>"
