"""A batch's rows in and out of the warehouse in bulk, column by column, never a Python dict per row.

PostgreSQL: written by ``COPY ... FROM STDIN`` and read by ``COPY (query) TO STDOUT``, as CSV that Arrow writes and
parses, typed by the contract; on the caller's connection, so a load stays inside the transaction that replaces
the partition and writes its ledger row. SQLite: written by the driver's ``executemany`` of tuples in the storage
format SQLAlchemy's types use, and read by the driver's cursor a chunk at a time into Arrow columns.

Values never become SQL text: the query's bound values go through psycopg2's own quoting (``mogrify``), and
identifiers through the dialect's quoting.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airloop.core.errors import AirloopError
from airloop.core.spec import ColumnType

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class LoadError(AirloopError):
    """A value of the frame its column's contract type cannot hold (the load stops; its transaction rolls back)."""


#: Rows per COPY chunk and per executemany: the CSV of one chunk is what a load holds beside the frame.
CHUNK_ROWS = 100_000
#: SQLAlchemy's storage format of a ``DateTime`` on SQLite (its ``DATETIME`` type's default, ``%S.%f``): instants
#: in UTC. Arrow's ``%S`` of a microsecond timestamp writes the seconds with their 6 fractional digits.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S"


def arrow_type(kind: ColumnType) -> pa.DataType:
    """The Arrow type of a contract type: timestamps are instants in UTC, to the microsecond (the warehouse's)."""
    import pyarrow as pa

    return {
        "integer": pa.int64(),
        "number": pa.float64(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "boolean": pa.bool_(),
    }[kind]


@dataclass(frozen=True)
class Rows:
    """Rows ready to write: Arrow columns of the contract's types, and those types."""

    data: pa.Table
    types: dict[str, ColumnType]

    @property
    def count(self) -> int:
        return self.data.num_rows


def rows_to_write(
    frame: pd.DataFrame,
    types: dict[str, ColumnType],
    constants: dict[str, tuple[ColumnType, Any]] | None = None,
    *,
    row_number: str | None = None,
    first_row: int = 0,
) -> Rows:
    """The ``frame``'s columns that ``types`` names, typed by the contract, with a column of one value for each
    of ``constants`` (``{name: (type, value)}``) and ``row_number`` (each row's position, from ``first_row``).
    Made before a load takes its lock. A value its column's type cannot hold (a fraction in an integer column, text in a
    timestamp one, an integer beyond 64 bits) raises :class:`LoadError` naming the column. Instants become UTC
    and keep microseconds, as the warehouse does (floored, as Python's datetime drops nanoseconds)."""
    constants = constants or {}
    data = _arrow_table(frame, types, constants, row_number, first_row)
    types = {**types, **{name: kind for name, (kind, _value) in constants.items()}}
    if row_number is not None:
        types[row_number] = "integer"
    return Rows(data, types)


def write_rows(conn: Connection, table: sa.Table, rows: Rows) -> int:
    """Insert ``rows`` into ``table`` on ``conn``, inside its transaction; returns the rows written. A database
    error is SQLAlchemy's, as from any statement (``IntegrityError`` for a key written twice)."""
    if conn.dialect.name == "postgresql":
        _copy_in(conn, table, rows.data)
    else:
        _insert_many(conn, table, rows.data, rows.types)
    return rows.count


def read_rows(
    conn: Connection, query: sa.Select[Any], types: dict[str, ColumnType], *, sort_by: Sequence[str] = ()
) -> pd.DataFrame:
    """The rows of ``query`` (its columns those of ``types``, in order), as pandas reads them through SQLAlchemy
    (``pd.read_sql``): integers with nulls as floats, booleans with nulls as objects, instants as
    ``datetime64[ns, UTC]`` (SQLite: in UTC without a zone, as SQLAlchemy reads SQLite's); but a column with no
    value at all (no rows, or only nulls) keeps its type, where pandas made it ``object``.

    ``sort_by``: columns of numbers, instants or text of one byte order in every collation (ISO dates) to order
    the rows by, ascending, nulls where the database's ``ORDER BY`` puts them (PostgreSQL: last; SQLite: first),
    sorted by Arrow: faster than the database's sort of wide rows."""
    postgresql = conn.dialect.name == "postgresql"
    rows = (_copy_out if postgresql else _fetch_sqlite)(conn, query, types)
    if sort_by:
        placement = "at_end" if postgresql else "at_start"
        rows = rows.sort_by([(name, "ascending") for name in sort_by], null_placement=placement)
    return rows.to_pandas(coerce_temporal_nanoseconds=True)


def _arrow_table(
    frame: pd.DataFrame,
    types: dict[str, ColumnType],
    constants: dict[str, tuple[ColumnType, Any]],
    row_number: str | None,
    first_row: int = 0,
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {}
    for name, kind in types.items():
        target = arrow_type(kind)
        try:
            column = pa.Array.from_pandas(frame[name])  # NaN, NaT and None all null
            if kind == "timestamp" and pa.types.is_timestamp(column.type):
                # Floored in UTC (a zone's repeated hour is ambiguous to Arrow), as datetime drops nanoseconds.
                if column.type.tz is not None:
                    column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
                column = pc.floor_temporal(column, unit="microsecond")
            if column.type != target:
                # Unchecked for integers as numbers (rounded, as float() does); checked otherwise: 2.5 is no
                # integer and says so, and no instant loses a digit (they were floored above).
                column = column.cast(target, safe=kind != "number")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
            raise LoadError(f"column {name!r} cannot be stored as {kind}: {exc}") from exc
        columns[name] = column
    rows = len(frame)
    if row_number is not None:
        columns[row_number] = pa.array(range(first_row, first_row + rows), type=pa.int64())
    for name, (kind, value) in constants.items():
        columns[name] = pa.repeat(pa.scalar(value, type=arrow_type(kind)), rows)
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


@contextmanager
def _driver_cursor(conn: Connection, statement: str) -> Iterator[Any]:
    """The driver's own cursor on ``conn`` (for COPY, which SQLAlchemy does not wrap, and SQLite's chunked
    fetch), its errors raised as SQLAlchemy raises a statement's (``IntegrityError``, ``DataError``, ...), and closed after."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.driver_connection.cursor()
    try:
        yield cursor
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()


def _copy_in(conn: Connection, table: sa.Table, data: pa.Table) -> None:
    import pyarrow.csv as pcsv

    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in data.column_names)
    # Arrow writes UTF-8, whatever the connection's client encoding.
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN WITH (FORMAT csv, ENCODING 'UTF8')"
    # Every value quoted, nulls not: CSV's empty field is NULL, a quoted "" the empty string.
    options = pcsv.WriteOptions(include_header=False, quoting_style="all_valid")
    with _driver_cursor(conn, statement) as cursor:
        for batch in data.to_batches(max_chunksize=CHUNK_ROWS):
            buffer = io.BytesIO()
            pcsv.write_csv(batch, buffer, options)
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)


def _copy_out(conn: Connection, query: sa.Select[Any], types: dict[str, ColumnType]) -> pa.Table:
    import pyarrow.csv as pcsv

    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    buffer = io.BytesIO()
    with _driver_cursor(conn, str(compiled)) as cursor:
        select = cursor.mogrify(str(compiled), compiled.params).decode()
        # Instants written in UTC, whatever the session's zone; the caller's zone back after the read.
        cursor.execute("SELECT current_setting('TimeZone')")
        (zone,) = cursor.fetchone()
        cursor.execute("SELECT set_config('TimeZone', 'UTC', true)")
        cursor.copy_expert(
            f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')", buffer
        )
        cursor.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
    buffer.seek(0)
    return pcsv.read_csv(
        buffer,
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={name: arrow_type(kind) for name, kind in types.items()},
            # PostgreSQL's CSV: NULL is an empty field, the empty string a quoted one; booleans are t and f.
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def _fetch_sqlite(conn: Connection, query: sa.Select[Any], types: dict[str, ColumnType]) -> pa.Table:
    """SQLite's rows, fetched a chunk at a time and turned into Arrow columns; instants stay as SQLAlchemy reads
    them from SQLite (UTC, without a zone), booleans are booleans."""
    import pyarrow as pa

    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    names = list(types)
    batches = []
    with _driver_cursor(conn, str(compiled)) as cursor:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            columns = list(zip(*rows, strict=True))
            arrays = [
                _sqlite_column(values, types[name]) for values, name in zip(columns, names, strict=True)
            ]
            batches.append(pa.record_batch(arrays, names=names))
    schema = pa.schema([(name, _sqlite_arrow_type(kind)) for name, kind in types.items()])
    return pa.Table.from_batches(batches, schema=schema)


def _sqlite_arrow_type(kind: ColumnType) -> pa.DataType:
    import pyarrow as pa

    return pa.timestamp("us") if kind == "timestamp" else arrow_type(kind)


def _sqlite_column(values: Sequence[Any], kind: ColumnType) -> pa.Array:
    import pyarrow as pa

    if kind == "timestamp":  # SQLAlchemy's text, parsed by Arrow
        return pa.array(values, type=pa.string()).cast(pa.timestamp("us"))
    if kind == "boolean":  # stored as 0 and 1
        return pa.array(values, type=pa.int64()).cast(pa.bool_())
    return pa.array(values, type=arrow_type(kind))


def _insert_many(conn: Connection, table: sa.Table, data: pa.Table, types: dict[str, ColumnType]) -> None:
    # The compiled INSERT lists the columns in the table's order: the tuples follow it.
    data = data.select([column.name for column in table.columns if column.name in data.column_names])
    statement = str(sa.insert(table).compile(dialect=conn.dialect, column_keys=data.column_names))
    for batch in data.to_batches(max_chunksize=CHUNK_ROWS):
        columns = [_sqlite_values(batch.column(i), types[name]) for i, name in enumerate(batch.schema.names)]
        conn.exec_driver_sql(statement, list(zip(*columns, strict=True)))


def _sqlite_values(column: pa.Array, kind: ColumnType) -> list[Any]:
    """A column as SQLAlchemy's SQLite types store it (instants as UTC text, booleans as 0 and 1), as Python
    values made by numpy and Arrow in bulk, ``None`` for a null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "timestamp":  # "%S" of a microsecond timestamp carries its 6 fractional digits
        column = pc.strftime(column, format=_SQLITE_DATETIME, locale="C")
    elif kind == "boolean":
        column = column.cast(pa.int64())
    if pa.types.is_string(column.type):
        return column.to_numpy(zero_copy_only=False).tolist()  # None where null
    values = column.fill_null(0).to_numpy().tolist()
    for position in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)):
        values[position] = None
    return values
