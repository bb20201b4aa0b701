"""SQL sources: the query for one data interval, its bounds bound as parameters, its result delivered as the
partition (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from airloop.core.errors import ConfigError, SourceError
from airloop.ingest.extract import extract_partition
from airloop.ingest.landing import find_partition, read_partition
from airloop.model.context import ModelContext

pytestmark = pytest.mark.unit

START = datetime(2013, 1, 2, tzinfo=UTC)
QUERY = (
    "SELECT * FROM upstream_flights WHERE time_hour >= :start AND time_hour < :end ORDER BY time_hour, flight"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def upstream(request, tmp_path) -> sa.Engine:
    """A database of the upstream system, holding three days of flights (and a quote in a value)."""
    url = (
        f"sqlite:///{tmp_path}/upstream.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = sa.create_engine(url)
    table = sa.Table(
        "upstream_flights",
        sa.MetaData(),
        sa.Column("time_hour", sa.DateTime(timezone=True)),
        sa.Column("flight", sa.Integer),
        sa.Column("carrier", sa.Text),
        sa.Column("arr_delay", sa.Float),
    )
    table.create(engine)
    rows = [
        {"time_hour": START + timedelta(hours=h), "flight": h, "carrier": "UA", "arr_delay": float(h)}
        for h in range(-5, 30)
    ]
    rows[7]["carrier"] = "O'Hare; DROP TABLE upstream_flights"
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    yield engine
    engine.dispose()


@pytest.fixture
def ctx(airloop_home, tmp_path) -> ModelContext:
    spec = {
        "name": "upstream_model",
        "start_date": "2013-01-01",
        "time_column": "time_hour",
        "features": ["flight"],
        "target": {"kind": "regression", "column": "arr_delay"},
        "source": {"kind": "sql", "conn_id": "upstream", "query": QUERY},
        "contract": {
            "row_count": {"min": 1},
            "columns": [
                {"name": "time_hour", "type": "timestamp"},
                {"name": "flight", "type": "integer"},
                {"name": "carrier", "type": "string"},
                {"name": "arr_delay", "type": "number"},
            ],
        },
    }
    models = tmp_path / "models"
    models.mkdir()
    (models / "upstream_model.yaml").write_text(yaml.safe_dump(spec))
    return ModelContext.load("upstream_model", replace(airloop_home, models_dir=models))


def test_the_query_reads_exactly_the_interval_and_its_result_is_the_delivery(ctx, upstream):
    extracted = extract_partition(ctx, upstream, START, START + timedelta(days=1), "2013-01-02")
    assert extracted.rows == 24
    landed = find_partition(ctx.landing, "2013-01-02")
    assert [f.name for f in landed.files] == ["query.parquet"] and landed.checksum == extracted.checksum
    frame, problems = read_partition(ctx.spec, landed)
    assert problems == []
    # Instants, whatever the database returned (SQLite gives text): the first and last hour of the day.
    assert str(frame["time_hour"].dtype) == "datetime64[ns, UTC]"
    assert frame["time_hour"].min() == pd.Timestamp(START) and frame["time_hour"].max() == pd.Timestamp(
        START + timedelta(hours=23)
    )
    # A value is data, never SQL: the quoted carrier came back as it was stored.
    assert "O'Hare; DROP TABLE upstream_flights" in set(frame["carrier"])


def test_reading_the_same_interval_again_delivers_the_same_bytes(ctx, upstream):
    first = extract_partition(ctx, upstream, START, START + timedelta(days=1), "2013-01-02")
    again = extract_partition(ctx, upstream, START, START + timedelta(days=1), "2013-01-02")
    assert again.checksum == first.checksum and again.rows == first.rows


def test_an_empty_interval_is_an_empty_delivery_for_validation_to_judge(ctx, upstream):
    later = START + timedelta(days=30)
    assert extract_partition(ctx, upstream, later, later + timedelta(days=1), "2013-02-01").rows == 0
    assert find_partition(ctx.landing, "2013-02-01").files


def test_a_failing_query_names_the_partition_and_the_connection(ctx, upstream):
    with upstream.begin() as conn:
        conn.execute(sa.text("DROP TABLE upstream_flights"))
    with pytest.raises(
        SourceError, match=r"partition 2013-01-02 of upstream_model: the query on connection 'upstream'"
    ):
        extract_partition(ctx, upstream, START, START + timedelta(days=1), "2013-01-02")


def test_a_model_without_a_sql_source_has_no_query(airloop_home, upstream):
    landing = ModelContext.load("flights_delay", airloop_home)
    with pytest.raises(ConfigError, match="source.kind is landing, not sql"):
        extract_partition(landing, upstream, START, START + timedelta(days=1), "2013-01-02")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"kind": "sql", "conn_id": "x", "query": "SELECT * FROM t WHERE ts >= :start"}, "it lacks :end"),
        ({"kind": "sql", "query": QUERY}, "field 'source.conn_id': Field required"),
        ({"kind": "kafka"}, "source.kind must be one of landing, sql"),
    ],
)
def test_a_sql_source_must_bind_the_interval_and_name_its_connection(tmp_path, source, expected):
    from pathlib import Path

    from airloop.core.spec import load_spec

    raw = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "config/models/flights_delay.yaml").read_text()
    )
    raw["source"] = source
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as raised:
        load_spec(path)
    assert str(path) in str(raised.value) and expected in str(raised.value)
