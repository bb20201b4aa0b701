"""The ingest DAG run for real with ``dag.test()``: GX validation, warehouse writes, quarantine and alerts.

The warehouse is SQLite and PostgreSQL in turn (a database made for the test and dropped after it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from asset_events import asset_event_extras
from channels import point_at_nothing
from ingest_runs import DAY, dag, landing, ledger, run, run_of, sa_has_rows

from airloop.airflow.alerting import redeliver_alerts
from airloop.core.events import EventKind
from airloop.local.demo.replay import day_frame, write_partition
from airloop.model.context import ModelContext
from airloop.status import format_status, warehouse_status
from airloop.store.events import events_of
from airloop.store.ledger import partition_row_count
from airloop.store.outbox import undelivered_alerts

pytestmark = pytest.mark.integration


def test_wrong_type_is_quarantined_and_alerted(env):
    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    frame["dep_delay"] = frame["dep_delay"].astype(object)
    frame.loc[5, "dep_delay"] = "delayed"
    write_partition(frame, landing(config), DAY, "csv")

    assert run(DAY) == "failed"

    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert "dep_delay" in row.reason
    kept = Path(row.quarantine_path)
    assert (kept / "flights.csv").read_bytes() == (
        landing(config) / "date=2013-01-02" / "flights.csv"
    ).read_bytes()
    assert (kept / "verdict.json").is_file()
    assert not sa_has_rows(engine, spec)
    [mail] = catcher.emails()
    assert "2013-01-02" in mail["Subject"] and "quarantined" in mail["Subject"]
    assert mail["To"] == "mlops-oncall@example.com"
    [hook] = catcher.webhooks()
    assert "dep_delay" in hook["text"]
    kinds = [e.kind for e in events_of(engine, "flights_delay")]
    assert kinds.count(EventKind.QUARANTINE) == 1 and kinds.count(EventKind.ALERT_SENT) == 2


def test_valid_day_loads_once_and_rerun_changes_nothing(env):
    config, spec, engine, catcher = env
    expected = len(day_frame(DAY))
    write_partition(day_frame(DAY), landing(config), DAY)

    first_run = run_of(DAY)
    assert first_run.state == "success"
    first = ledger(engine)["2013-01-02"]
    assert (first.status, first.rows, first.reason) == ("passed", expected, None)
    assert partition_row_count(engine, spec, "2013-01-02") == expected
    # The load emits the batches Asset once, through the ingest task's alias, naming what it loaded.
    assert asset_event_extras(spec.batches_asset, first_run.run_id) == [
        {"partition": "2013-01-02", "rows": expected}
    ]

    assert run(DAY) == "success"
    again = ledger(engine)["2013-01-02"]
    assert partition_row_count(engine, spec, "2013-01-02") == expected
    assert again.checksum == first.checksum and len(ledger(engine)) == 1
    assert catcher.emails() == [] and catcher.webhooks() == []
    assert (config.data_docs_dir / "index.html").is_file()


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("damage", "expected_reason"),
    [
        ("missing_column", "missing column(s): carrier"),
        ("empty", "row count 0"),
        ("zero_bytes", "empty (0 bytes)"),
        ("bad_value", "carrier"),
    ],
)
def test_bad_batches_never_reach_the_warehouse(env, damage, expected_reason):
    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    if damage == "missing_column":
        write_partition(frame.drop(columns=["carrier"]), landing(config), DAY, "csv")
    elif damage == "empty":
        write_partition(frame.iloc[0:0], landing(config), DAY, "csv")
    elif damage == "zero_bytes":
        folder = write_partition(frame, landing(config), DAY, "csv")
        (folder / "flights.csv").write_bytes(b"")
    else:
        frame.loc[3, "carrier"] = "ZZ"
        write_partition(frame, landing(config), DAY)

    failed_run = run_of(DAY)
    assert failed_run.state == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert expected_reason in row.reason
    assert asset_event_extras(spec.batches_asset, failed_run.run_id) == []  # nothing for the score DAG
    assert Path(row.quarantine_path).is_dir()
    assert not sa_has_rows(engine, spec)
    assert len(catcher.emails()) == 1 and len(catcher.webhooks()) == 1


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_missing_partition_waits_then_fails_clearly(env, capfd):
    config, spec, engine, catcher = env
    started = datetime.now(UTC)
    assert run(DAY) == "failed"
    waited = (datetime.now(UTC) - started).total_seconds()
    assert waited >= 3, "the sensor must wait for the configured timeout before failing"
    out = capfd.readouterr()
    assert "partition 2013-01-02 of flights_delay did not land within 0:00:03" in out.out + out.err
    assert not config.warehouse_url.startswith("sqlite") or not (config.home / "warehouse.db").exists()


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["link_to_valid_file", "link_to_system_file", "nested_folder", "fifo"])
def test_the_landing_folder_is_a_boundary(env, tmp_path, delivery):
    """Links are never followed (a valid day outside the landing folder is not loaded, a system file not read),
    a nested folder is not read and a FIFO does not block the reader: each delivery is quarantined, kept as it
    was received (a link as a link), with a reason naming the entry."""
    import os

    config, spec, engine, catcher = env
    folder = landing(config) / "date=2013-01-02"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()  # the writer says the partition is whole
    if delivery == "link_to_valid_file":
        outside = write_partition(day_frame(DAY), tmp_path / "elsewhere", DAY) / "flights.parquet"
        os.symlink(outside, folder / "flights.parquet")
        expected, target = "flights.parquet: a symbolic link", str(outside)
    elif delivery == "link_to_system_file":
        os.symlink("/etc/passwd", folder / "flights.csv")
        expected, target = (
            "flights.csv: a symbolic link (to /etc/passwd); links are not followed",
            "/etc/passwd",
        )
    elif delivery == "nested_folder":
        write_partition(day_frame(DAY), folder, DAY)  # folder/date=2013-01-02/flights.parquet
        expected, target = "date=2013-01-02: a folder; files in nested folders are not read", None
    else:
        os.mkfifo(folder / "flights.csv")
        expected, target = "flights.csv: not a regular file", None

    assert run(DAY) == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined" and expected in row.reason
    assert not sa_has_rows(engine, spec)
    kept = Path(row.quarantine_path)
    (entry,) = [p for p in folder.iterdir() if p.name != "_SUCCESS"]
    copy = kept / entry.name
    if target is not None:
        assert copy.is_symlink() and os.readlink(copy) == target
    elif delivery == "nested_folder":
        inner = "flights.parquet"
        assert (copy / inner).read_bytes() == (entry / inner).read_bytes()
    else:
        assert not copy.exists()
        assert "flights.csv: not a regular file, not kept" in (kept / "verdict.json").read_text()
    assert len(catcher.emails()) == 1


def test_a_nul_character_is_a_validation_failure_naming_column_and_row_on_every_warehouse(env):
    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    frame["tailnum"] = frame["tailnum"].astype(object)
    frame.loc[7, "tailnum"] = "N12\x0034"
    folder = write_partition(frame, landing(config), DAY)

    assert run(DAY) == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert "column 'tailnum': 1 value(s) hold a NUL character, which the warehouse cannot store (_row 7)" in (
        row.reason
    )
    kept = Path(row.quarantine_path) / "flights.parquet"
    assert kept.read_bytes() == (folder / "flights.parquet").read_bytes()
    assert not sa_has_rows(engine, spec)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_csv_cut_in_the_middle_of_a_row_is_quarantined_naming_the_line(env):
    config, spec, engine, catcher = env
    folder = write_partition(day_frame(DAY), landing(config), DAY, "csv")
    data = (folder / "flights.csv").read_bytes()
    cut = data.index(b",", len(data) * 6 // 10) + 1  # just after a field separator: inside a row
    (folder / "flights.csv").write_bytes(data[:cut])
    line = data[:cut].count(b"\n") + 1

    assert run(DAY) == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert f"file flights.csv, line {line}: " in row.reason and "(the header's)" in row.reason
    assert (Path(row.quarantine_path) / "flights.csv").read_bytes() == data[:cut]
    assert not sa_has_rows(engine, spec)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["twice_in_one_file", "two_overlapping_files"])
def test_a_day_delivered_twice_is_quarantined_naming_the_key(env, delivery):
    import pandas as pd

    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    if delivery == "twice_in_one_file":
        folder = write_partition(pd.concat([frame, frame], ignore_index=True), landing(config), DAY)
        repeated = len(frame) * 2
    else:
        folder = write_partition(frame, landing(config), DAY)
        frame.iloc[100:300].to_parquet(folder / "flights-late.parquet", index=False)
        repeated = 400

    assert run(DAY) == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert (
        f"key (carrier, flight, time_hour): {repeated} row(s) share their key with another row" in row.reason
    )
    for file in folder.glob("flights*"):  # the data files (the _SUCCESS marker is no data)
        assert (Path(row.quarantine_path) / file.name).read_bytes() == file.read_bytes()
    assert not sa_has_rows(engine, spec)


def test_timestamps_in_another_zone_are_stored_as_the_delivered_instants(env):
    import pandas as pd

    from airloop.store.batches import read_batches

    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    frame["time_hour"] = frame["time_hour"].dt.tz_convert("America/New_York")
    write_partition(frame, landing(config), DAY)

    assert run(DAY) == "success"
    stored = read_batches(engine, spec, ["2013-01-02"])
    instants = pd.to_datetime(stored["time_hour"], utc=True)
    assert instants.tolist() == frame["time_hour"].dt.tz_convert("UTC").tolist()


def test_a_bad_redelivery_of_a_good_day_keeps_the_good_rows_and_the_ledger_agrees(env):
    config, spec, engine, catcher = env
    good = day_frame(DAY)
    write_partition(good, landing(config), DAY)
    assert run(DAY) == "success"
    before = ledger(engine)["2013-01-02"]

    bad = good.drop(columns=["carrier"])
    folder = write_partition(bad, landing(config), DAY)
    assert run(DAY) == "failed"

    after = ledger(engine)["2013-01-02"]
    assert (after.status, after.rows, after.checksum) == ("passed", len(good), before.checksum)
    assert partition_row_count(engine, spec, "2013-01-02") == len(good)
    (event,) = [e for e in events_of(engine, "flights_delay") if e.kind == EventKind.QUARANTINE]
    kept = Path(event.payload.path)
    assert (kept / "flights.parquet").read_bytes() == (folder / "flights.parquet").read_bytes()
    assert "missing column(s): carrier" in event.payload.reason
    assert len(catcher.emails()) == 1
    [hook] = catcher.webhooks()
    assert f"the earlier delivery that passed ({len(good):,} rows) is unchanged" in hook["text"]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["another_whole_day", "another_day_mixed_in"])
def test_rows_of_another_day_are_quarantined_named_and_counted(env, delivery):
    import pandas as pd

    config, spec, engine, catcher = env
    other = day_frame(date(2013, 1, 5))
    if delivery == "another_whole_day":
        frame, outside = other, len(other)
    else:
        frame, outside = pd.concat([day_frame(DAY), other.head(40)], ignore_index=True), 40
    write_partition(frame, landing(config), DAY)

    assert run(DAY) == "failed"
    row = ledger(engine)["2013-01-02"]
    assert row.status == "quarantined"
    assert (
        f"column 'time_hour': {outside} row(s) outside the partition's interval [2013-01-02T00:00:00+00:00, "
        "2013-01-03T00:00:00+00:00) widened by 6 h, e.g. ['2013-01-0"
    ) in row.reason
    assert not sa_has_rows(engine, spec)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_partition_without_its_completion_marker_is_waited_for_not_read(env, capfd):
    config, spec, engine, catcher = env
    folder = write_partition(day_frame(DAY), landing(config), DAY)
    (folder / "_SUCCESS").unlink()  # the writer has not finished

    assert run(DAY) == "failed"
    out = capfd.readouterr()
    assert "did not land within 0:00:03: no completion marker _SUCCESS in" in out.out + out.err
    import sqlalchemy as sa

    assert not sa.inspect(engine).has_table("airloop_batch_ledger") or "2013-01-02" not in ledger(engine)
    assert not sa_has_rows(engine, spec)


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_alerts_undelivered_past_every_retry_go_out_once_when_the_channels_answer(env, monkeypatch):
    """Both channels down through the alert task's four tries: the quarantine alert and the alert task's own
    failure alert stay queued, `airloop status` lists them, and the outbox DAG delivers each once by each channel
    when the channels answer again (leaving alone what is younger than its grace)."""
    from airflow.sdk.definitions._internal import abstractoperator

    # The retries are what is tested, not their 10-80 s waits: Airflow's cap on a retry's delay
    # ([core] max_task_retry_delay, read once on import) brought down to a second for this run.
    monkeypatch.setattr(abstractoperator, "MAX_RETRY_DELAY", 1)
    config, spec, engine, catcher = env
    frame = day_frame(DAY)
    frame.loc[3, "carrier"] = "ZZ"
    write_partition(frame, landing(config), DAY)
    for channel in ("email", "slack"):
        point_at_nothing(monkeypatch, channel, catcher, "airloop@example.com")

    assert run(DAY) == "failed"
    assert ledger(engine)["2013-01-02"].status == "quarantined"
    ctx = ModelContext.load("flights_delay")
    status = warehouse_status(ctx)
    owed = status["undelivered_alerts"]
    assert [a["channels"] for a in owed] == [["email", "slack"], ["email", "slack"]]
    assert "batch 2013-01-02 quarantined" in owed[0]["subject"]
    assert "task flights_delay_ingest.alert_quarantine failed: AlertDeliveryError" in owed[1]["subject"]
    assert "undelivered alerts: 2 alerts" in format_status(status)
    assert catcher.emails() == [] and catcher.webhooks() == []

    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SMTP", catcher.smtp_connection("airloop@example.com"))
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SLACK", catcher.slack_connection())
    outbox = dag("alert_outbox.py", "airloop_alert_outbox")
    # Queued a minute ago, within the grace: the alert task's retries may still be on it.
    assert outbox.test().state == "success"
    assert catcher.emails() == []
    # While the task that queued an alert may still send it (a retry, a cleared run), the outbox leaves it alone.
    queued = [item.alert for item in undelivered_alerts(engine)]
    assert [(a.dag_id, a.task_id) for a in queued] == [("flights_delay_ingest", "alert_quarantine")] * 2
    left = redeliver_alerts(engine, {spec.name: spec}, {}, grace=timedelta(0), task_finished=lambda _a: False)
    assert (left["left_to_their_task"], left["delivered"], catcher.emails()) == (2, 0, [])

    assert outbox.test(run_conf={"grace_minutes": 0}).state == "success"
    assert sorted(m["Subject"] for m in catcher.emails()) == sorted(a["subject"] for a in owed)
    hooks = [h["text"] for h in catcher.webhooks()]
    assert len(hooks) == 2
    assert any("Batch 2013-01-02" in h for h in hooks) and any("Task alert_quarantine" in h for h in hooks)

    assert outbox.test(run_conf={"grace_minutes": 0}).state == "success"
    assert len(catcher.emails()) == 2 and len(catcher.webhooks()) == 2
    assert warehouse_status(ctx)["undelivered_alerts"] == []
    sent = [e for e in events_of(engine, "flights_delay") if e.kind == EventKind.ALERT_SENT]
    assert sorted(e.payload.channel for e in sent) == ["email", "email", "slack", "slack"]
