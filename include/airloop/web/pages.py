"""The Models page as HTML: one self-contained document (its style inline, no script, nothing fetched from
elsewhere), every value from the data escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.45rem 0.6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { background: #f6f8fa; }
.badge { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 0.8rem; font-weight: 600; }
.healthy { background: #dafbe1; color: #116329; }
.drifting { background: #fff8c5; color: #7d4e00; }
.failing { background: #ffebe9; color: #a40e26; }
.muted { color: #57606a; }
.errors { background: #ffebe9; padding: 0.6rem; margin-bottom: 1rem; }
"""


def models_page(rows: Sequence[Mapping[str, Any]], errors: Sequence[str] = ()) -> str:
    """The page listing every model of ``rows`` (:func:`airloop.web.overview.model_row`), with the specs that did
    not load (``errors``, naming the file and the field)."""
    body = "".join(_row(row) for row in rows) or '<tr><td colspan="7" class="muted">No model.</td></tr>'
    broken = (
        '<div class="errors" id="broken-specs"><strong>Specs that do not load</strong><ul>'
        + "".join(f"<li>{escape(e)}</li>" for e in errors)
        + "</ul></div>"
        if errors
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>airloop: models</title>'
        f"<style>{_STYLE}</style></head><body><h1>Models</h1>{broken}"
        '<table id="models"><thead><tr><th>Model</th><th>Kind</th><th>Health</th><th>Champion</th>'
        "<th>Last batch</th><th>Last monitored window</th><th>Open alerts</th></tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>"
    )


def _row(row: Mapping[str, Any]) -> str:
    model = escape(row["model"])
    reasons = "; ".join(row["health_reasons"])
    return (
        f'<tr data-model="{model}">'
        f'<td><a href="/dags/{model}_ingest" target="_top">{model}</a></td>'
        f"<td>{escape(row['kind'])}</td>"
        f'<td><span class="badge {escape(row["health"])}" title="{escape(reasons)}">{escape(row["health"])}</span>'
        f"{f'<div class=muted>{escape(reasons)}</div>' if reasons else ''}</td>"
        f"<td>{_champion(row['champion'])}</td>"
        f"<td>{_batch(row['last_batch'], row['batches'])}</td>"
        f"<td>{_window(row['last_window'])}</td>"
        f"<td>{int(row['open_alerts'])}</td>"
        "</tr>"
    )


def _champion(champion: Mapping[str, Any] | None) -> str:
    if not champion:
        return '<span class="muted">none recorded</span>'
    since = champion.get("since") or ""
    age = f", {champion['age_days']:g} days" if champion.get("age_days") is not None else ""
    by = f" by {escape(champion['by'])}" if champion.get("by") else ""
    return (
        f"version {escape(str(champion['version']))}"
        f"<div class=muted>{escape(champion['how'])}{by} {escape(since[:10])}{age}</div>"
    )


def _batch(batch: Mapping[str, Any] | None, counts: Mapping[str, int]) -> str:
    if not batch:
        return '<span class="muted">none yet</span>'
    rows = f", {int(batch['rows']):,} rows" if batch.get("rows") is not None else ""
    reason = f"<div class=muted>{escape(batch['reason'])}</div>" if batch.get("reason") else ""
    totals = ", ".join(f"{int(n)} {escape(status)}" for status, n in counts.items())
    return f"{escape(batch['partition'])}: {escape(batch['status'])}{rows}{reason}<div class=muted>{totals}</div>"


def _window(window: Mapping[str, Any] | None) -> str:
    if not window:
        return '<span class="muted">not monitored yet</span>'
    share = f", drift share {window['drift_share']:.2f}" if window.get("drift_share") is not None else ""
    verdict = "drifted" if window["drifted"] else "no drift"
    return f"{escape(window['window'])}: {verdict}{share}<div class=muted>{escape(window['outcome'])}</div>"
