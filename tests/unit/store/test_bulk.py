"""Rows in and out in bulk (PostgreSQL's COPY as CSV through Arrow; SQLite's executemany): every contract type
comes back exactly, nulls and awkward text included, on SQLite and PostgreSQL, and reads as ``pd.read_sql`` reads."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from airloop.store.bulk import LoadError, read_rows, rows_to_write, write_rows
from airloop.store.db import engine_for

pytestmark = pytest.mark.unit

TYPES = {"i": "integer", "f": "number", "s": "string", "t": "timestamp", "b": "boolean"}
AWKWARD = ["", " padded ", "a,b", 'say "hi"', "two\nlines", "tab\there", "ünïcødé ✓", "\\N", "NULL", "t"]


def _table(name: str = "bulk_rows") -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("k", sa.String(32), primary_key=True),
        sa.Column("n", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("i", sa.BigInteger),
        sa.Column("f", sa.Float),
        sa.Column("s", sa.Text),
        sa.Column("t", sa.DateTime(timezone=True)),
        sa.Column("b", sa.Boolean),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def _frame(rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "i": pd.array(rng.integers(-(2**62), 2**62, rows), dtype="Int64"),
            "f": rng.standard_normal(rows) * 10.0 ** rng.integers(-300, 300, rows),
            "s": np.array([AWKWARD[j % len(AWKWARD)] for j in range(rows)], dtype=object),
            "t": pd.to_datetime(rng.integers(0, 2**41, rows) * 1000 + 123, unit="us", utc=True),
            "b": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
        }
    )
    for column, step in zip(TYPES, (7, 11, 13, 17, 19), strict=True):
        frame.loc[::step, column] = None
    return frame


@pytest.fixture
def engine(warehouse_url):
    engine = engine_for(warehouse_url)
    _table().create(engine)
    return engine


def _rows(frame: pd.DataFrame, key: str = "p1"):
    constants = {"k": ("string", key), "at": ("timestamp", datetime.now(UTC))}
    return rows_to_write(frame, TYPES, constants, row_number="n")


def _write(engine, frame: pd.DataFrame, key: str = "p1") -> int:
    rows = _rows(frame, key)
    with engine.begin() as conn:
        return write_rows(conn, _table(), rows)


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(_table())).scalar_one()


def _query(key: str = "p1") -> sa.Select:
    table = _table()
    return (
        sa.select(*(table.c[name] for name in ("n", *TYPES))).where(table.c.k.in_([key])).order_by(table.c.n)
    )


def test_every_type_comes_back_exactly_and_reads_as_pandas_reads_through_sqlalchemy(engine):
    frame = _frame()
    assert _write(engine, frame) == len(frame)
    with engine.connect() as conn:
        read = read_rows(conn, _query(), {"n": "integer", **TYPES})
        expected = pd.read_sql(_query(), conn)
    pd.testing.assert_frame_equal(read, expected)
    assert read["n"].tolist() == list(range(len(frame)))
    for name in TYPES:
        back = read[name].astype(object).where(read[name].notna(), None).tolist()
        sent = frame[name].astype(object).where(frame[name].notna(), None).tolist()
        if (
            name == "t" and engine.dialect.name == "sqlite"
        ):  # SQLAlchemy reads SQLite's instants without a zone
            sent = [None if v is None else v.tz_convert(None) for v in sent]
        if name == "b":  # SQLite hands booleans back as 0 and 1 to pandas
            back = [None if v is None else bool(v) for v in back]
        if name == "i":
            back = [None if v is None else int(v) for v in back]
            sent = [
                None if v is None else float(v) for v in sent
            ]  # pandas reads them as floats, beside nulls
        assert back == sent, name


def test_a_partition_key_with_quotes_is_bound_never_spliced_into_the_sql(engine):
    key = "p'); DROP TABLE bulk_rows; --"
    frame = _frame(20)
    _write(engine, frame, key)
    with engine.connect() as conn:
        read = read_rows(conn, _query(key), {"n": "integer", **TYPES})
    assert len(read) == 20
    assert sa.inspect(engine).has_table("bulk_rows")


def test_instants_are_read_in_utc_whatever_the_server_s_time_zone(warehouse_url):
    if not warehouse_url.startswith("postgresql"):
        pytest.skip("SQLite has no session time zone")
    engine = sa.create_engine(warehouse_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    _table().create(engine)
    frame = _frame(50)
    frame.loc[1, "t"] = pd.Timestamp("1850-03-01 08:00:00", tz="UTC")  # Tokyo's offset was +09:18:59 then
    _write(engine, frame)
    with engine.connect() as conn:
        read = read_rows(conn, _query(), {"n": "integer", **TYPES})
        assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Tokyo", "the caller's zone is back"
    engine.dispose()
    assert read["t"].dt.tz is not None and str(read["t"].dt.tz) == "UTC"
    assert read["t"].dropna().tolist() == frame["t"].dropna().tolist()


def test_a_value_its_type_cannot_hold_names_the_column_and_writes_nothing(engine):
    frame = _frame(10).assign(i=lambda f: f["i"].astype("float64"))
    frame.loc[3, "i"] = 2.5
    with pytest.raises(LoadError, match="column 'i' cannot be stored as integer"):
        _write(engine, frame)
    beyond = _frame(10).assign(i=lambda f: f["i"].astype(object))
    beyond.loc[2, "i"] = 2**64
    with pytest.raises(LoadError, match="column 'i' cannot be stored as integer"):
        _write(engine, beyond)
    assert _count(engine) == 0


def test_a_key_written_twice_is_sqlalchemy_s_integrity_error_and_the_transaction_rolls_back(engine):
    _write(engine, _frame(30))
    table = _table()
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(table.delete())
        assert write_rows(conn, table, _rows(_frame(30), "p2")) == 30  # written: the failure comes after
        write_rows(conn, table, _rows(_frame(5), "p2"))  # (k, n) again
    assert _count(engine) == 30
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(table.c.k).distinct()).scalars()) == {"p1"}


def test_no_rows_and_columns_of_nulls_read_typed(engine):
    _write(engine, _frame(0))
    types = {"n": "integer", **TYPES}
    with engine.connect() as conn:
        empty = read_rows(conn, _query(), types)
    assert len(empty) == 0 and list(empty.columns) == list(types)
    assert empty["f"].dtype == "float64" and empty["s"].dtype == object
    nulls = _frame(5).assign(i=None, f=None, t=pd.NaT, b=None)
    _write(engine, nulls, "p2")
    with engine.connect() as conn:
        read = read_rows(conn, _query("p2"), types)
    assert read["i"].isna().all() and read["i"].dtype == "float64"
    assert read["t"].isna().all() and str(read["t"].dtype).startswith("datetime64[ns")
    assert read["b"].isna().all() and read["s"].tolist() == nulls["s"].tolist()


def test_instants_are_stored_in_utc_floored_to_the_microsecond_from_any_zone(engine):
    frame = _frame(3)
    frame["t"] = pd.to_datetime(
        [
            "2013-06-01 12:00:00.0000019+02:00",
            "1969-12-31 23:59:59.9999995+00:00",
            "1850-03-01 08:00:00+09:19",
        ],
        format="ISO8601",
        utc=True,
    ).tz_convert("Europe/Berlin")
    _write(engine, frame)
    with engine.connect() as conn:
        read = read_rows(conn, _query(), {"n": "integer", **TYPES})["t"]
    expected = ["2013-06-01 10:00:00.000001", "1969-12-31 23:59:59.999999", "1850-02-28 22:41:00"]
    assert [str(v.tz_localize(None) if v.tzinfo else v) for v in read] == expected


def test_an_instant_in_a_zone_s_repeated_hour_is_stored(engine):
    frame = _frame(2)
    repeated = pd.Timestamp("2013-11-03 06:30:00.0000007", tz="UTC")  # 01:30 in New York, twice that night
    frame["t"] = pd.Series([repeated, repeated + pd.Timedelta(hours=1)]).dt.tz_convert("America/New_York")
    _write(engine, frame)
    with engine.connect() as conn:
        read = read_rows(conn, _query(), {"n": "integer", **TYPES})["t"]
    assert [str(v.tz_localize(None) if v.tzinfo else v) for v in read] == [
        "2013-11-03 06:30:00",
        "2013-11-03 07:30:00",
    ]


def test_sqlite_stores_what_sqlalchemy_s_own_types_store(warehouse_url):
    if not warehouse_url.startswith("sqlite"):
        pytest.skip("SQLite's storage format")
    engine = engine_for(warehouse_url)
    table = _table()
    table.create(engine)
    frame = _frame(4)
    frame["t"] = pd.to_datetime(
        ["2013-01-03 04:00:00", "2013-01-03 04:00:00.5", None, "2013-01-03"], utc=True, format="ISO8601"
    )
    rows = _rows(frame)
    with engine.begin() as conn:
        write_rows(conn, table, rows)
        conn.execute(table.insert(), [{**row, "k": "by-sqlalchemy"} for row in _python_records(rows)])
    with engine.connect() as conn:
        raw = conn.exec_driver_sql('SELECT k, n, i, f, s, t, b, "at" FROM bulk_rows ORDER BY k, n').all()
    ours, theirs = raw[4:], raw[:4]  # "by-sqlalchemy" sorts before "p1"
    assert [row[1:] for row in ours] == [row[1:] for row in theirs]
    assert ours[0][5] == "2013-01-03 04:00:00.000000"


def _python_records(rows) -> list[dict]:
    """The rows as the values SQLAlchemy's own insert takes (what the per-row path gave it)."""
    return rows.data.to_pylist()


def test_more_rows_than_one_chunk_keep_their_order(engine, monkeypatch):
    monkeypatch.setattr("airloop.store.bulk.CHUNK_ROWS", 64)
    frame = _frame(300)
    _write(engine, frame)
    with engine.connect() as conn:
        read = read_rows(conn, _query(), {"n": "integer", **TYPES})
    assert read["n"].tolist() == list(range(300))
    assert read["s"].fillna("<null>").tolist() == frame["s"].fillna("<null>").tolist()


def test_rows_sorted_by_arrow_come_in_the_order_of_the_database_s_order_by(engine):
    frame = _frame(500)  # instants at random, some null; integers at random, some null
    _write(engine, frame)
    table = _table()
    query = sa.select(*(table.c[name] for name in ("n", *TYPES))).where(table.c.k == "p1")
    types = {"n": "integer", **TYPES}
    with engine.connect() as conn:
        sorted_by_arrow = read_rows(conn, query, types, sort_by=["t", "i", "n"])
        ordered = query.order_by(table.c.t, table.c.i, table.c.n)  # nulls where the database puts them
        sorted_by_sql = read_rows(conn, ordered, types)
    assert sorted_by_arrow["n"].tolist() == sorted_by_sql["n"].tolist()
    assert sorted_by_arrow["n"].tolist() != list(range(500)), "the rows were not in that order already"
