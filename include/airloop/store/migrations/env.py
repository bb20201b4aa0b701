"""Alembic's environment for the warehouse's shared tables.

It never opens a database itself: :func:`airloop.store.db.migrate` hands it a connection that already holds the
schema lock inside a transaction, which the migration joins.
"""

from alembic import context

from airloop.store.db import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the warehouse is migrated by airloop.store.db.migrate(), not by the alembic command")

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
