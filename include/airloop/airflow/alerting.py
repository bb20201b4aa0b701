"""Alerts sent by airloop's tasks: composed by :mod:`airloop.alerts`, delivered by the providers' notifiers.

Every delivered channel is written to the event log, so a retried task re-sends only what failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airloop import warehouse
from airloop.airflow.notify import raise_if_failed, send_alert
from airloop.alerts import quarantine_alert
from airloop.ingest import model_spec
from airloop.settings import settings


def alert_quarantine(model: str, quarantined: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tell the model's channels that a batch was quarantined; raises if a channel could not be reached."""
    config = settings()
    spec = model_spec(model, config)
    partition = quarantined["partition"]
    ti = context.get("ti")
    links = {"Airflow run": ti.log_url} if ti is not None else {}
    links["Data Docs"] = (config.data_docs_dir / "index.html").as_uri()
    alert = quarantine_alert(
        model=model,
        partition=partition,
        reason=quarantined["reason"],
        rows=quarantined.get("rows"),
        files=list(quarantined.get("files", [])),
        quarantine_path=quarantined["quarantine_path"],
        links=links,
    )
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine)
    key = f"alert:quarantine:{model}:{partition}:{quarantined['checksum']}:"
    sent = {k.removeprefix(key) for k in warehouse.event_keys(engine, key)}
    results = send_alert(spec.alerts, alert, context, skip=sent)
    for result in results:
        if result.ok:
            warehouse.record_event(
                engine,
                model,
                "alert_sent",
                {"channel": result.channel, "conn_id": result.conn_id, "subject": alert.subject},
                partition=partition,
                dedup_key=key + result.channel,
            )
    raise_if_failed(results)
    return [{"channel": r.channel, "ok": r.ok, "error": r.error} for r in results]
