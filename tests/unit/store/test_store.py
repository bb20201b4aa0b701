"""The warehouse on SQLite and PostgreSQL: the shared tables migrated to Alembic's head (once, also by processes
racing), per-model tables kept in step with their spec, stable row ids at load, and the event log."""

from __future__ import annotations

import multiprocessing
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from airloop.core.contracts import RetrainOutcome
from airloop.core.events import AlertSentPayload, DriftHandledPayload, EventKind, QuarantinePayload
from airloop.core.spec import ModelSpec, load_spec
from airloop.local.demo.replay import day_frame
from airloop.store import db
from airloop.store.batches import read_batches
from airloop.store.events import event_id, event_keys, events_of, last_event, last_event_id, record_event
from airloop.store.ledger import LedgerEntry, ledger_entries, partition_row_count, replace_partition
from airloop.store.schema import BATCH_CHECKSUM, PARTITION, ROW, batches_table

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS = ROOT / "include" / "airloop" / "store" / "migrations"
SHARED_TABLES = {
    "airloop_batch_ledger",
    "airloop_events",
    "airloop_monitoring",
    "airloop_champion_moves",
    "airloop_table_versions",
}


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty warehouse database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(url: str):
    engine = db.open_warehouse(url)
    yield engine
    engine.dispose()


def _versions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(f"SELECT version_num FROM {db.VERSION_TABLE}"))]


def _columns(engine: sa.Engine, table: str) -> dict[str, dict]:
    return {c["name"]: c for c in sa.inspect(engine).get_columns(table)}


def _with_columns(spec: ModelSpec, columns: list[dict]) -> ModelSpec:
    """``spec`` whose contract holds ``columns`` (dicts of ColumnSpec fields), validated as a spec file would be."""
    raw = spec.model_dump(mode="json")
    raw["contract"]["columns"] = columns
    return ModelSpec.model_validate(raw)


def _entry(partition: str, checksum: str = "c" * 64) -> LedgerEntry:
    return LedgerEntry(partition=partition, status="passed", checksum=checksum, files=["flights.parquet"])


# -- migrations ---------------------------------------------------------------------------------------------------


def test_head_is_alembics_head():
    from alembic.script import ScriptDirectory

    assert db.HEAD == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_open_warehouse_migrates_once_to_head(url, monkeypatch):
    monkeypatch.setattr(db, "_migrated", set())
    engine = db.engine_for(url)
    with engine.connect() as conn:
        assert db.current_revision(conn) is None
    assert db.open_warehouse(url) is engine
    assert SHARED_TABLES <= set(sa.inspect(engine).get_table_names())
    assert _versions(engine) == [db.HEAD]
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    # Once per process: the next calls do not even look.
    assert db.migrate(engine) is False
    assert db.open_warehouse(url) is engine
    assert statements == []
    # A new process (nothing remembered) finds the warehouse at head: it reads, and changes nothing.
    monkeypatch.setattr(db, "_migrated", set())
    assert db.migrate(engine) is False
    assert statements and not [
        s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "INSERT"))
    ]
    assert _versions(engine) == [db.HEAD]
    engine.dispose()


def test_a_new_warehouse_is_migrated_by_the_first_call(url, monkeypatch):
    monkeypatch.setattr(db, "_migrated", set())
    assert db.migrate(db.engine_for(url)) is True
    db.engine_for(url).dispose()


def test_a_warehouse_at_an_unknown_revision_is_a_schema_error(url, monkeypatch):
    engine = db.open_warehouse(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {db.VERSION_TABLE} SET version_num = '9999'"))
    monkeypatch.setattr(db, "_migrated", set())
    try:
        with pytest.raises(db.SchemaError, match="9999"):
            db.migrate(engine)
    finally:
        engine.dispose()


#: Processes that open a new warehouse at once (more than two make a collision likelier, were there no lock).
PROCESSES = 4


def _open_at_once(url: str, barrier, errors) -> None:
    try:
        barrier.wait(timeout=60)
        db.open_warehouse(url)
    except BaseException as exc:  # noqa: BLE001 - reported to the test, whatever it is
        errors.put(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None
    finally:
        db.engine_for(url).dispose()


def test_processes_migrating_at_once_give_one_version_and_no_error(url):
    # Forked before this process opened the URL: each child has its own engine and nothing remembered.
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(PROCESSES), context.Queue()
    children = [context.Process(target=_open_at_once, args=(url, barrier, errors)) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    reported = [errors.get(timeout=5) for _ in range(sum(c.exitcode != 0 for c in children))]
    assert [c.exitcode for c in children] == [0] * PROCESSES, reported
    engine = db.engine_for(url)
    assert _versions(engine) == [db.HEAD]
    assert SHARED_TABLES <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


# -- per-model tables ---------------------------------------------------------------------------------------------


def test_sync_table_creates_a_models_table_once(engine, spec):
    assert db.sync_table(engine, batches_table(spec)) == ["CreateTableOp", "CreateIndexOp"]
    assert db.sync_table(engine, batches_table(spec)) == []
    (index,) = sa.inspect(engine).get_indexes(spec.batches_table)
    assert index["unique"] and index["column_names"] == [PARTITION, *spec.contract.key]
    columns = _columns(engine, spec.batches_table)
    assert [c.name for c in spec.contract.columns] == [n for n in columns if not n.startswith("_")]
    assert {PARTITION, ROW, BATCH_CHECKSUM} <= set(columns)
    key = sa.inspect(engine).get_pk_constraint(spec.batches_table)["constrained_columns"]
    assert key == [PARTITION, ROW]


def test_sync_table_adds_the_key_a_spec_declared_later(engine, spec):
    raw = spec.model_dump()
    raw["contract"]["key"] = None
    keyless = type(spec).model_validate(raw)
    assert db.sync_table(engine, batches_table(keyless)) == ["CreateTableOp"]
    replace_partition(engine, keyless, day_frame(date(2013, 1, 2)).head(5), _entry("2013-01-02"))
    assert db.sync_table(engine, batches_table(spec)) == ["CreateIndexOp"]
    assert [i["unique"] for i in sa.inspect(engine).get_indexes(spec.batches_table)] == [True]
    assert db.sync_table(engine, batches_table(spec)) == []


def test_sync_table_adds_a_column_the_spec_added(engine, spec):
    db.sync_table(engine, batches_table(spec))
    replace_partition(engine, spec, day_frame(date(2013, 1, 2)).head(5), _entry("2013-01-02"))
    columns = [c.model_dump() for c in spec.contract.columns]
    wider = _with_columns(spec, [*columns, {"name": "runway", "type": "string"}])
    assert db.sync_table(engine, batches_table(wider)) == ["AddColumnOp"]
    added = _columns(engine, spec.batches_table)["runway"]
    assert added["nullable"] is True
    # The rows already stored are kept, the new column empty.
    stored = read_batches(engine, wider, ["2013-01-02"])
    assert len(stored) == 5 and stored["runway"].isna().all()
    assert db.sync_table(engine, batches_table(wider)) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("remove", r"column 'tailnum' is stored but no longer in the spec"),
        ("retype", r"column 'tailnum' would change from TEXT to (FLOAT|DOUBLE)"),
    ],
)
def test_sync_table_refuses_a_change_that_would_lose_data(engine, spec, change, message):
    db.sync_table(engine, batches_table(spec))
    before = _columns(engine, spec.batches_table)
    columns = [c.model_dump() for c in spec.contract.columns]
    assert "tailnum" in before
    if change == "remove":
        columns = [c for c in columns if c["name"] != "tailnum"]
    else:
        columns = [{**c, "type": "number"} if c["name"] == "tailnum" else c for c in columns]
    with pytest.raises(db.SchemaError, match=message) as err:
        db.sync_table(engine, batches_table(_with_columns(spec, columns)))
    assert f"table {spec.batches_table}:" in str(err.value)
    assert _columns(engine, spec.batches_table).keys() == before.keys()
    # Refused, nothing recorded: asking again refuses again.
    with pytest.raises(db.SchemaError, match=message):
        db.sync_table(engine, batches_table(_with_columns(spec, columns)))


# -- stable row ids -----------------------------------------------------------------------------------------------


def _contract_rows(frame: pd.DataFrame, spec: ModelSpec) -> list[tuple]:
    names = [c.name for c in spec.contract.columns if c.type != "timestamp"]
    return list(
        frame[names].astype(object).where(frame[names].notna(), None).itertuples(index=False, name=None)
    )


def test_rows_are_numbered_in_delivered_order_and_a_reload_replaces_them(engine, spec):
    db.sync_table(engine, batches_table(spec))
    day = day_frame(date(2013, 1, 2)).head(40)
    delivered = day.sample(frac=1, random_state=7).reset_index(drop=True)  # not in time order
    assert replace_partition(engine, spec, delivered, _entry("2013-01-02")) == 40
    stored = read_batches(engine, spec, ["2013-01-02"], order="delivered")
    assert stored[ROW].tolist() == list(range(40))
    assert _contract_rows(stored, spec) == _contract_rows(delivered, spec)
    assert not stored[spec.time_column].is_monotonic_increasing  # it is the delivery's order, not time's

    # A new delivery of the partition replaces the old one whole: no row of it is left, none is doubled.
    again = day.tail(25).iloc[::-1].reset_index(drop=True)
    assert replace_partition(engine, spec, again, _entry("2013-01-02", "d" * 64)) == 25
    stored = read_batches(engine, spec, ["2013-01-02"])
    assert stored[ROW].tolist() == list(range(25))
    assert _contract_rows(stored, spec) == _contract_rows(again, spec)
    assert set(stored[BATCH_CHECKSUM]) == {"d" * 64}
    assert partition_row_count(engine, spec, "2013-01-02") == 25
    assert [(e.partition, e.rows, e.checksum) for e in ledger_entries(engine, spec.name)] == [
        ("2013-01-02", 25, "d" * 64)
    ]


def test_the_partition_and_row_key_rejects_a_doubled_row(engine, spec):
    db.sync_table(engine, batches_table(spec))
    replace_partition(engine, spec, day_frame(date(2013, 1, 2)).head(3), _entry("2013-01-02"))
    table = batches_table(spec)
    with engine.connect() as conn:
        row = dict(conn.execute(sa.select(table).where(table.c[ROW] == 1)).one()._mapping)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(table.insert().values(**row))
    # The same row of another partition is another row.
    with engine.begin() as conn:
        conn.execute(table.insert().values(**{**row, PARTITION: "2013-01-03"}))
    assert partition_row_count(engine, spec, "2013-01-02") == 3


# -- the event log ------------------------------------------------------------------------------------------------


def _alert(subject: str = "quarantined") -> AlertSentPayload:
    return AlertSentPayload(channel="email", conn_id="smtp_default", subject=subject, dag_id="d", run_id="r")


def test_an_event_with_a_dedup_key_is_written_once(engine):
    assert record_event(engine, "m", _alert(), dedup_key="k:email") is True
    assert record_event(engine, "m", _alert("retried"), dedup_key="k:email") is False
    assert record_event(engine, "m", _alert(), dedup_key="k:slack") is True
    # Without a key, every call is an event.
    assert record_event(engine, "m", _alert()) and record_event(engine, "m", _alert())
    assert event_keys(engine, "k:") == {"k:email", "k:slack"}
    events = events_of(engine, "m")
    assert len(events) == 4
    assert events[0].payload.subject == "quarantined"  # the first write stays
    assert event_id(engine, "k:email") == events[0].id


def test_events_of_gives_typed_payloads_oldest_first(engine):
    quarantine = QuarantinePayload(reason="bad", path="/q/date=2013-01-04", files=["a.csv"], run_id=None)
    handled = DriftHandledPayload(
        **RetrainOutcome(
            model="m",
            outcome="champion kept",
            version="4",
            champion_before="3",
            reasons=["margin too small"],
            drift_event_id=7,
            window="2013-07-14..2013-07-20",
            train_run_id="retrain__1",
            handled_events=[7],
        ).model_dump(),
        window_last="2013-07-20",
    )
    record_event(engine, "m", quarantine, partition="2013-01-04")
    record_event(engine, "m", _alert(), dedup_key="x")
    record_event(engine, "m", handled)
    record_event(engine, "other", _alert())

    events = events_of(engine, "m")
    assert [e.kind for e in events] == [EventKind.QUARANTINE, EventKind.ALERT_SENT, EventKind.DRIFT_HANDLED]
    assert [type(e.payload) for e in events] == [QuarantinePayload, AlertSentPayload, DriftHandledPayload]
    assert events[0].payload == quarantine and events[2].payload == handled
    assert events[2].payload.handled_events == [7] and events[2].payload.superseded is False
    assert (events[0].partition, events[0].dedup_key, events[1].dedup_key) == ("2013-01-04", None, "x")
    assert all(e.model == "m" and e.created_at is not None for e in events)
    assert [e.id for e in events] == sorted(e.id for e in events)

    only = events_of(engine, "m", [EventKind.DRIFT_HANDLED, EventKind.QUARANTINE])
    assert [e.kind for e in only] == [EventKind.QUARANTINE, EventKind.DRIFT_HANDLED]
    assert events_of(engine, "m", []) == []
    assert last_event_id(engine, "m", [EventKind.ALERT_SENT]) == events[1].id
    assert last_event_id(engine, "m", [EventKind.PROMOTION]) == 0
    assert last_event(engine, "m", [EventKind.ALERT_SENT, EventKind.QUARANTINE]) == events[1]
    assert last_event(engine, "m", [EventKind.PROMOTION]) is None


def test_a_payload_that_is_no_events_is_refused(engine):
    outcome = RetrainOutcome(
        model="m",
        outcome="promoted",
        version="2",
        champion_before="1",
        reasons=[],
        drift_event_id=None,
        window="w",
        train_run_id="t",
    )
    with pytest.raises(TypeError, match="RetrainOutcome is not an event payload"):
        record_event(engine, "m", outcome)
    assert events_of(engine, "m") == []
