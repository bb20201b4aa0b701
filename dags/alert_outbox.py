"""
### `airloop_alert_outbox`: every alert delivered at least once

Every alert airloop composes (a quarantined batch, a drift, a retrain's outcome, and a task failure that could not
be announced) is queued in the warehouse's event log before it is sent, and each channel that delivers it is
recorded. When an alert task's retries run out with a channel down, the alert stays queued: this DAG, on the
`alert_outbox_schedule` setting (every ten minutes by default), sends it again by the channels that have not
delivered it, until each has, without sending it twice by a channel that did.

1. **redeliver_alerts**: the alerts queued more than `grace_minutes` ago (default 15, longer than an alert task's
   own retries, so the two never send the same alert at once) that a channel still owes. The run fails, naming
   the channel and its error, while any is still owed; `airloop status MODEL` lists them. Trigger it with
   `{"grace_minutes": 0}` to send everything owed now, e.g. once a channel's connection is mended.

One DAG for the deployment (the warehouse is shared by every model); each alert goes by its model's channels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from airloop.airflow.alerting import OUTBOX_GRACE
from airloop.core.settings import settings

with DAG(
    dag_id="airloop_alert_outbox",
    description="Sends again the alerts a channel has not delivered",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(settings().alert_outbox_schedule, timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["airloop", "alerts"],
    # No failure callback: a failure here is an alert that could not be sent; announcing it would queue another.
    default_args={"owner": "airloop", "retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        "grace_minutes": Param(
            OUTBOX_GRACE / timedelta(minutes=1),
            type="number",
            minimum=0,
            description="Leave alerts this recent alone",
        )
    },
) as airloop_alert_outbox:

    @task
    def redeliver_alerts(params=None, **context) -> dict:
        from airloop.airflow import tasks

        return tasks.redeliver_queued_alerts(float(params["grace_minutes"]), context)

    redeliver_alerts()
