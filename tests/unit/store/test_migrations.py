"""The migrations and the live table definitions describe the same shared tables, on both warehouses."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_migrated_warehouse_matches_the_schema_module(backend, tmp_path, request):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from airloop.store import schema
    from airloop.store.db import VERSION_TABLE, open_warehouse

    url = (
        f"sqlite:///{tmp_path}/warehouse.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = open_warehouse(url)
    shared = set(schema.metadata.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, parent: (
                    name in shared
                    if kind == "table"
                    else kind == "schema" or parent.get("table_name") in shared
                ),
            },
        )
        differences = compare_metadata(context, schema.metadata)
        tables = set(sa_tables(conn))
    assert differences == []
    assert shared | {VERSION_TABLE} == tables


def sa_tables(conn) -> list[str]:
    import sqlalchemy as sa

    return sa.inspect(conn).get_table_names()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0002_widens_the_monitored_window_keys_and_keeps_the_rows(backend, tmp_path, request):
    import sqlalchemy as sa
    from alembic import command

    from airloop.store import db

    url = f"sqlite:///{tmp_path}/w.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = db.engine_for(url)
    with engine.connect() as conn:
        command.upgrade(db._alembic_config(conn), "0001")
        conn.commit()
        conn.execute(
            sa.text(
                "INSERT INTO airloop_monitoring (model, window_first, window_last, outcome, drifted, current_rows,"
                " reference_rows, labelled_rows, reasons, figures, created_at) VALUES ('m', '2013-01-01', '2013-01-07', 'drift', true, 1, 1, 0, '[]', '{}',"
                " CURRENT_TIMESTAMP)"
            )
        )
        conn.commit()
        command.upgrade(db._alembic_config(conn), "head")
        conn.commit()
        assert db.current_revision(conn) == db.HEAD == "0002"
        conn.execute(
            sa.text(
                "INSERT INTO airloop_monitoring (model, window_first, window_last, outcome, drifted, current_rows,"
                " reference_rows, labelled_rows, reasons, figures, created_at) VALUES ('m', '2013-01-07T00:00', '2013-01-07T23:00', 'no drift', false,"
                " 1, 1, 0, '[]', '{}', CURRENT_TIMESTAMP)"
            )
        )
        rows = conn.execute(
            sa.text("SELECT window_first, window_last FROM airloop_monitoring ORDER BY id")
        ).all()
        width = sa.inspect(conn).get_columns("airloop_monitoring")
    assert [tuple(r) for r in rows] == [
        ("2013-01-01", "2013-01-07"),
        ("2013-01-07T00:00", "2013-01-07T23:00"),
    ]
    assert {c["name"]: getattr(c["type"], "length", None) for c in width}["window_last"] == 32
    engine.dispose()
