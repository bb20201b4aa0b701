"""The warehouse's engine and schema: one engine per URL and process, the shared tables brought to the Alembic
head (:mod:`airloop.store.migrations`), and per-model tables kept in step with their spec.

Tasks of many processes open the warehouse at once; migrating and syncing happen under a database-wide lock
(PostgreSQL's advisory lock, SQLite's write lock), and each process checks the schema once per URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airloop.core.errors import AirloopError
from airloop.core.files import lock_file
from airloop.store.schema import table_versions

#: Alembic's version table for the warehouse: ours alone, whatever else shares the database.
VERSION_TABLE = "airloop_alembic_version"
#: The newest revision under ``migrations/versions`` (a unit test holds it equal to Alembic's head): the cheap
#: check at the start of a task needs no Alembic import.
HEAD = "0002"
_SCRIPT_LOCATION = "airloop.store:migrations"
#: The key of the PostgreSQL advisory lock that serialises migrations (per database).
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"airloop.store.migrate").digest()[:8], "big", signed=True)

_migrated: set[str] = set()
_synced: set[tuple[str, str]] = set()


class SchemaError(AirloopError):
    """The warehouse's schema cannot follow: a spec change that would lose data, or an unknown revision."""


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL and process. SQLite gets WAL and a busy timeout: several tasks write at once."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=60000")
            # Switching a new database to WAL ignores the busy timeout: processes that open it at once would fail
            # with "database is locked". Only one switches, under a file lock; the others find it done.
            if (
                database
                and database != ":memory:"
                and cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
            ):
                with lock_file(Path(f"{database}.wal-lock")):
                    cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def open_warehouse(url: str) -> Engine:
    """The warehouse's engine, its shared tables at the head revision (migrated once per process and URL)."""
    engine = engine_for(url)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> bool:
    """Bring the shared tables to :data:`HEAD`; returns whether this call changed anything."""
    key = engine.url.render_as_string(hide_password=True)
    if key in _migrated:
        return False
    with engine.connect() as conn:
        at_head = current_revision(conn) == HEAD
    changed = False
    if not at_head:
        from alembic import command
        from alembic.util import CommandError

        with _schema_lock(engine) as conn:
            before = current_revision(conn)
            try:
                command.upgrade(_alembic_config(conn), "head")
            except CommandError as exc:
                raise SchemaError(
                    f"{key}: the warehouse is at revision {before!r}, unknown to this airloop (head {HEAD}): "
                    "was it migrated by a newer version?"
                ) from exc
            changed = before != HEAD
    _migrated.add(key)
    return changed


def current_revision(conn: Connection) -> str | None:
    """The warehouse's revision (``None``: never migrated)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def sync_table(engine: Engine, table: sa.Table) -> list[str]:
    """Create a per-model table, or add what its spec added (nullable columns, indexes); refuse a change that
    would drop or retype stored data. Returns what was done.

    The definition's digest (the table's DDL and its indexes') is kept in ``airloop_table_versions``: when it matches, the check is one query (once
    per process), and Alembic's comparison runs only for a table that is new or whose spec changed.
    """
    ddl = [sa.schema.CreateTable(table), *(sa.schema.CreateIndex(i) for i in sorted(table.indexes, key=str))]
    digest = hashlib.sha256("\n".join(str(d.compile(engine)) for d in ddl).encode()).hexdigest()
    key = (engine.url.render_as_string(hide_password=True), f"{table.name}:{digest}")
    if key in _synced:
        return []
    with engine.connect() as conn:
        in_step = _stored_digest(conn, table.name) == digest
    done: list[str] = []
    if not in_step:
        with _schema_lock(engine) as conn:
            if _stored_digest(conn, table.name) != digest:
                done = _apply_additive(conn, table)
                conn.execute(table_versions.delete().where(table_versions.c.table_name == table.name))
                conn.execute(
                    table_versions.insert().values(
                        table_name=table.name, digest=digest, updated_at=datetime.now(UTC)
                    )
                )
    _synced.add(key)
    return done


def _stored_digest(conn: Connection, name: str) -> str | None:
    query = sa.select(table_versions.c.digest).where(table_versions.c.table_name == name)
    return conn.execute(query).scalar()


def _migration_context(conn: Connection, name: str) -> Any:
    from alembic.migration import MigrationContext

    def ours(object_name: str | None, kind: str, parent: dict[str, Any]) -> bool:
        # Only this table: everything else in the database is another model's, or not airloop's at all.
        if kind == "table":
            return object_name == name
        if kind in ("index", "unique_constraint", "foreign_key_constraint"):
            return parent.get("table_name") == name
        return True

    return MigrationContext.configure(conn, opts={"compare_type": True, "include_name": ours})


def _apply_additive(conn: Connection, table: sa.Table) -> list[str]:
    from alembic.autogenerate import compare_metadata
    from alembic.operations import Operations, ops

    context = _migration_context(conn, table.name)
    todo, refused = [], []
    for diff in compare_metadata(context, table.metadata):
        if isinstance(diff, list):  # column modifications come grouped per column
            refused += [f"column {d[3]!r} would change from {d[-2]} to {d[-1]}" for d in diff]
        elif diff[0] == "add_table":
            todo.append(ops.CreateTableOp.from_table(diff[1]))
            todo += [ops.CreateIndexOp.from_index(index) for index in diff[1].indexes]
        elif diff[0] == "add_column" and diff[3].nullable:
            todo.append(ops.AddColumnOp.from_column_and_tablename(diff[1], diff[2], diff[3]._copy()))
        elif diff[0] == "add_index":
            todo.append(ops.CreateIndexOp.from_index(diff[1]))
        elif diff[0] == "remove_column":
            refused.append(f"column {diff[3].name!r} is stored but no longer in the spec")
        elif diff[0] == "add_column":
            refused.append(f"column {diff[3].name!r} is required (not nullable) but not stored")
        else:
            refused.append(f"{diff[0]} {diff[1:]!r}")
    if refused:
        raise SchemaError(
            f"table {table.name}: the spec's contract changed in a way that would lose or retype stored data: "
            f"{'; '.join(refused)}. Keep the old columns in the contract (nullable), or move the data to a new "
            "model name"
        )
    operations = Operations(context)
    for operation in todo:
        operations.invoke(operation)
    return [type(operation).__name__ for operation in todo]


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the warehouse's schema lock; commits when the block ends."""
    with _locked_transaction(engine, _LOCK_KEY) as conn:  # PostgreSQL's DDL is transactional: all or nothing
        yield conn


@contextmanager
def partition_transaction(engine: Engine, model: str, partition: str) -> Iterator[Connection]:
    """A transaction that holds the lock of one partition of ``model``: loads, quarantines and ledger writes of
    the same partition run one at a time, each seeing what the one before committed. Commits when the block ends.

    PostgreSQL: a transaction-scoped advisory lock keyed by the model and the partition (other partitions load
    in parallel). SQLite: the database's write lock, taken at the start (SQLite has one writer at a time anyway;
    taking it first means a second writer waits for the whole replacement, never interleaves with it).
    """
    digest = hashlib.sha256(f"airloop.partition\0{model}\0{partition}".encode()).digest()
    with _locked_transaction(engine, int.from_bytes(digest[:8], "big", signed=True)) as conn:
        yield conn


@contextmanager
def _locked_transaction(engine: Engine, key: int) -> Iterator[Connection]:
    """A connection in a transaction holding PostgreSQL's advisory lock ``key`` (SQLite: its write lock)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield conn
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's write lock, now (waits for the busy timeout)
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    config.attributes["connection"] = conn
    return config
