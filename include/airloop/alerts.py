"""Alert messages: what happened, to which model, batch or window, and where to look, for e-mail and Slack.

Pure composition, no delivery: :mod:`airloop.airflow.notify` sends an :class:`Alert` through Airflow's notifiers.
Every value that comes from data (reasons, file names, paths) is escaped for the channel that shows it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airloop.core.contracts import RetrainOutcome

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
    still_loaded: int | None = None,
) -> Alert:
    """The alert for a batch rejected by validation and kept in quarantine; ``still_loaded``, the rows of an
    earlier delivery of the partition that passed and stays in the warehouse.

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
    if still_loaded is not None:
        facts.append(
            ("Still loaded", f"the earlier delivery that passed ({still_loaded:,} rows) is unchanged")
        )
    return _compose(
        subject=f"[airloop] {model}: batch {partition} quarantined: {reason}",
        headline=f"Batch {partition} of model {model} was rejected by validation and quarantined.",
        facts=facts,
        links=links,
    )


def drift_alert(
    model: str,
    window: str,
    *,
    champion_version: str,
    drift_share: float | None,
    drifted_features: int,
    features: int,
    threshold_share: float,
    top_features: Sequence[Mapping[str, Any]],
    prediction: Mapping[str, Any] | None,
    quality: Mapping[str, Any] | None,
    reasons: Sequence[str],
    links: Mapping[str, str],
) -> Alert:
    """The alert for a monitored window whose data (or quality) drifted.

    ``top_features`` are the most drifted features, each ``{"column", "method", "score", "threshold"}``;
    ``prediction`` the prediction's drift in the same shape; ``quality`` is ``{"metric", "current", "baseline",
    "drop", "labelled_rows"}`` (figures None when not known); ``links`` maps a label (``"Drift report"``,
    ``"MLflow run"``, ``"Airflow run"``) to a URL.
    """
    share = "not measured" if drift_share is None else f"{drift_share:.0%}"
    facts = [
        ("Model", f"{model} (champion v{champion_version})"),
        ("Window", window),
        (
            "Drift share",
            f"{share}: {drifted_features} of {features} features drifted (drift at {threshold_share:.0%})",
        ),
        ("Top drifted features", "\n".join(_drift_line(f) for f in top_features) or "none"),
        ("Prediction drift", _drift_line(prediction) if prediction else "not measured"),
        ("Quality change", _quality_line(quality)),
        ("Why", "\n".join(reasons)),
    ]
    subject = f"[airloop] {model}: drift in {window}: {share} of features drifted"
    if quality and quality.get("current") is not None and quality.get("baseline") is not None:
        subject += f", {quality['metric']} {quality['current']:.3f} vs {quality['baseline']:.3f}"
    return _compose(
        subject=subject,
        headline=f"Model {model} has drifted in {window}: a drift event is recorded for retraining.",
        facts=facts,
        links=links,
    )


def retrain_alert(outcome: RetrainOutcome, links: Mapping[str, str]) -> Alert:
    """The alert at the end of a retrain: promoted, champion kept, or training failed."""
    model, result, window = outcome.model, outcome.outcome, outcome.window
    # A retrain started by the champion's age (spec monitoring.max_champion_age_days) handled no drift event.
    if outcome.drift_event_id is None:
        cause, why = f"on the champion's age (data {window})", f"champion aged, data {window}"
    else:
        cause, why = f"on drift in {window}", f"drift in {window}"
    if result == "promoted":
        headline = f"Model {model} retrained {cause}: version {outcome.version} is the new champion."
        subject = f"[airloop] {model}: retrained, v{outcome.version} promoted ({why})"
    elif result == "champion kept":
        headline = (
            f"Model {model} retrained {cause}: the challenger v{outcome.version} did not pass the "
            f"gate, champion v{outcome.champion_before} stays."
        )
        subject = f"[airloop] {model}: retrained, champion kept ({why})"
    else:
        pending = (
            "the drift event stays pending" if outcome.drift_event_id is not None else "next check retries"
        )
        headline = f"Model {model}: retraining {cause} failed; {pending}."
        subject = f"[airloop] {model}: retraining failed ({why})"
    facts = [
        ("Model", model),
        ("Drift window" if outcome.drift_event_id is not None else "New data", window),
        ("Outcome", result),
        ("Champion before", f"v{outcome.champion_before}" if outcome.champion_before else "none"),
        ("Challenger", f"v{outcome.version}" if outcome.version else "none"),
        ("Why", "\n".join(outcome.reasons) or "-"),
        ("Training run", outcome.train_run_id),
    ]
    return _compose(subject=subject, headline=headline, facts=facts, links=links)


def unrecorded_champion_alert(
    model: str,
    *,
    registry_version: str | None,
    recorded_version: str | None,
    why: str,
    links: Mapping[str, str],
) -> Alert:
    """The alert for a champion alias moved behind airloop's back (see :mod:`airloop.promote.guard`)."""
    moved_to = f"v{registry_version}" if registry_version else "no version (removed)"
    serving = f"v{recorded_version}" if recorded_version else "nothing (no recorded champion)"
    facts = [
        ("Model", model),
        ("Registry's champion alias", moved_to),
        ("Recorded champion", f"v{recorded_version}" if recorded_version else "none"),
        ("Scoring serves", serving),
        ("Why", why),
        (
            "What to do",
            f"set the alias back to {serving} in the registry; to make another version the champion, promote it "
            "through airloop afterwards (`airloop promote`, through the gate)",
        ),
    ]
    return _compose(
        subject=f"[airloop] {model}: champion alias moved outside airloop (to {moved_to})",
        headline=f"The champion alias of {model} was moved outside airloop; scoring serves {serving}.",
        facts=facts,
        links=links,
    )


def failure_alert(
    model: str,
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None,
    error: str,
    links: Mapping[str, str],
) -> Alert:
    """The alert for a task that failed for good (its retries used up)."""
    facts = [
        ("Model", model),
        ("DAG", dag_id),
        ("Task", task_id if try_number is None else f"{task_id} (try {try_number})"),
        ("Run", run_id),
        ("Error", error),
    ]
    return _compose(
        subject=f"[airloop] {model}: task {dag_id}.{task_id} failed: {error}",
        headline=f"Task {task_id} of DAG {dag_id} failed and will not be retried.",
        facts=facts,
        links=links,
    )


def _drift_line(figure: Mapping[str, Any]) -> str:
    return (
        f"{figure['column']}: {figure['score']:.3f} ({figure['method']}, threshold {figure['threshold']:g})"
    )


def _quality_line(quality: Mapping[str, Any] | None) -> str:
    if not quality or not quality.get("labelled_rows"):
        return "not judged: no labels have arrived"
    metric, rows = quality["metric"], quality["labelled_rows"]
    if quality.get("current") is None or quality.get("baseline") is None:
        return f"not judged: {metric} not known on {rows:,} labelled rows"
    drop = quality["current"] - quality["baseline"]
    return (
        f"{metric} {quality['current']:.4f} on {rows:,} labelled rows vs {quality['baseline']:.4f} on the "
        f"champion's holdout ({drop:+.4f})"
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
