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
