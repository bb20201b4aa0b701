"""A batch validated a chunk at a time says what a validation of the whole batch says: the verdict, the failures
named and the kept result, check by check (counts, shares, examples and their rows). Each case is a Parquet
delivery read both ways, whole (``read_partition``) and in chunks of a few rows (``parquet_chunks``), so each chunk
holds the types its rows give it, as a real delivery read in chunks does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airloop.core.spec import ModelSpec, load_spec
from airloop.ingest.chunk_results import KeyDuplicates, map_result
from airloop.ingest.landing import (
    UnreadableChunk,
    find_delivery,
    parquet_chunks,
    partition_dir,
    read_partition,
)
from airloop.ingest.validation import validate_chunks, validate_frame
from airloop.local.demo.replay import day_frame

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
PARTITION = "2013-01-05"
INTERVAL = (datetime(2013, 1, 5, tzinfo=UTC), datetime(2013, 1, 6, tzinfo=UTC))


def _spec(**contract: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "toy",
            "start_date": "2013-01-01",
            "time_column": "time_hour",
            "features": ["carrier", "distance"],
            "target": {"column": "arr_delay", "threshold": 15},
            "contract": {
                "row_count": {"min": 3, "max": 100},
                "key": ["carrier", "flight"],
                "columns": [
                    {"name": "time_hour", "type": "timestamp", "nullable": False},
                    {"name": "carrier", "type": "string", "nullable": False, "allowed": ["AA", "UA", "DL"]},
                    {"name": "flight", "type": "integer", "nullable": False},
                    {"name": "distance", "type": "integer", "nullable": False, "min": 1, "max": 6000},
                    {"name": "arr_delay", "type": "number", "min": -120, "max": 1800, "mostly": 0.8},
                    {"name": "tailnum", "type": "string", "max_null_share": 0.2},
                ],
                **contract,
            },
        }
    )


def _frame(rows: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_hour": pd.date_range("2013-01-05", periods=rows, freq="30min", tz="UTC"),
            "carrier": (["AA", "UA", "DL"] * rows)[:rows],
            "flight": np.arange(rows) + 100,
            "distance": np.arange(1, rows + 1) * 100,
            "arr_delay": np.linspace(-10.0, 100.0, rows),
            "tailnum": [f"N{i}" for i in range(rows)],
        }
    )


def _set(column: str, rows: list[int], value: object):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object) if not isinstance(value, float | int) else frame[column]
        frame.loc[rows, column] = value
        return frame

    return change


CASES = {
    "clean": lambda f: f,
    "nulls in two chunks": _set("carrier", [3, 30], None),
    "out of range in three chunks": _set("distance", [1, 12, 33], 0),
    "not allowed, more examples than GX keeps": _set(
        "carrier", list(range(0, 40, 3))[:14] + [1, 2, 4, 5, 7, 8, 10], "ZZ"
    ),
    # 2 of the first chunk's 7 values out of range (29%, more than mostly's 20%), 3 of the batch's 40 (7.5%).
    "mostly met by the batch, not by a chunk": _set("arr_delay", [2, 3, 27], 5000.0),
    "mostly missed across chunks": _set("arr_delay", [2, 9, 15, 21, 27, 33, 38, 39, 0], 5000.0),
    "mostly counts non-null values": lambda f: _set("arr_delay", [2, 15, 27, 36, 39, 11, 12], 5000.0)(
        _set("arr_delay", list(range(17, 26)), np.nan)(f)
    ),
    "null share of a nullable column": _set("tailnum", [0, 5, 11, 17, 23, 29, 31, 35, 37], None),
    "key repeated across chunks": lambda f: f.assign(flight=np.where(f.index == 36, 100, f["flight"])),
    # 40 rows in pairs, some pairs split between chunks: more examples than GX keeps.
    "key repeated within a chunk and across": lambda f: f.assign(carrier="AA", flight=100 + f.index // 2),
    "too many rows in all": lambda f: pd.concat([f] * 3, ignore_index=True).assign(flight=np.arange(120)),
    "extra column": lambda f: f.assign(runway="4L"),
    "missing column": lambda f: f.drop(columns=["tailnum"]),
    "integer column with a null in one chunk": lambda f: f.assign(
        distance=f["distance"].where(f.index != 25, np.nan)
    ),
    "text in a number column": lambda f: f.assign(
        arr_delay=f["arr_delay"].astype(str).where(f.index != 20, "abc")
    ),
    "NUL characters": _set("tailnum", [2, 19, 33], "N\x00X"),
    "times that are no time": lambda f: f.assign(
        time_hour=f["time_hour"].map(lambda t: t.isoformat()).where(~f.index.isin([4, 29]), "soon")
    ),
    "rows of another day": lambda f: f.assign(
        time_hour=f["time_hour"].where(~f.index.isin([9, 31]), pd.Timestamp("2013-02-01", tz="UTC"))
    ),
}


PASSING = {"clean", "mostly met by the batch, not by a chunk"}


def _deliver(frame: pd.DataFrame, landing: Path, files: int, partition: str = PARTITION) -> None:
    folder = partition_dir(landing, partition)
    folder.mkdir(parents=True)
    for number, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / f"part-{number}.parquet", index=False)


def _both_ways(spec: ModelSpec, frame: pd.DataFrame, tmp_path: Path, *, chunk_rows: int, files: int = 1):
    landing = tmp_path / "landing"
    _deliver(frame, landing, files)
    landed = find_delivery(spec, landing, PARTITION)
    whole, problems = read_partition(spec, landed)
    assert not problems and whole is not None
    chunks, problems = parquet_chunks(spec, landed, chunk_rows)
    assert chunks is not None and not problems
    assert chunks.rows == len(frame)
    kwargs = {"batch_key": PARTITION, "results_dir": tmp_path / "results", "interval": INTERVAL}
    return validate_frame(whole, spec, **kwargs), validate_chunks(
        chunks.frames(), spec, key_columns=chunks.frames, **kwargs
    )


def _checks(outcome) -> list[tuple]:
    """What the kept result says, check by check (the ids, times and GX's own bookkeeping aside)."""
    result = json.loads(Path(outcome.result_path).read_text())
    checks = [
        (item["expectation_config"]["type"], json.dumps(item["expectation_config"]["kwargs"], sort_keys=True),
         item["success"], json.dumps(item["result"], sort_keys=True))
        for item in result["results"]
    ]  # fmt: skip
    return [*sorted(checks), ("success", result["success"]), ("statistics", result["statistics"])]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_batch_in_chunks_is_judged_as_the_whole_batch(case, tmp_path):
    spec = _spec()
    frame = CASES[case](_frame())
    whole, chunked = _both_ways(spec, frame, tmp_path, chunk_rows=7, files=2)
    assert chunked.passed is whole.passed
    assert chunked.failures == whole.failures
    assert _checks(chunked) == _checks(whole)
    assert whole.passed is (case in PASSING), "each case passes or fails as designed"


def test_a_real_day_in_chunks_is_judged_as_the_whole_day(tmp_path):
    spec = load_spec(ROOT / "config" / "models" / "flights_delay.yaml")
    day = day_frame(pd.Timestamp("2013-06-01").date())
    day.loc[[3, 500], "distance"] = -1
    day = pd.concat([day, day.iloc[[10, 700]]], ignore_index=True)  # two flights delivered twice, far apart
    interval = (datetime(2013, 6, 1, 4, tzinfo=UTC), datetime(2013, 6, 2, 4, tzinfo=UTC))
    landing = tmp_path / "landing"
    _deliver(day, landing, files=3, partition="2013-06-01")
    landed = find_delivery(spec, landing, "2013-06-01")
    whole, _ = read_partition(spec, landed)
    chunks, _ = parquet_chunks(spec, landed, 150)
    kwargs = {"batch_key": "2013-06-01", "results_dir": tmp_path / "results", "interval": interval}
    expected = validate_frame(whole, spec, **kwargs)
    got = validate_chunks(chunks.frames(), spec, key_columns=chunks.frames, **kwargs)
    assert any(f.startswith("key (carrier, flight, time_hour): 4 row(s)") for f in expected.failures)
    assert got.failures == expected.failures
    assert _checks(got) == _checks(expected)


def test_a_delivery_no_bigger_than_a_chunk_is_read_whole(tmp_path):
    spec = _spec()
    landing = tmp_path / "landing"
    _deliver(_frame(), landing, files=2)
    landed = find_delivery(spec, landing, PARTITION)
    assert parquet_chunks(spec, landed, 40) == (None, [])
    chunks, _ = parquet_chunks(spec, landed, 39)
    assert [list(f.index[[0, -1]]) for f in chunks.frames()] == [
        [0, 19],
        [20, 39],
    ]  # a chunk: one file's rows
    chunks, _ = parquet_chunks(spec, landed, 15)
    assert [len(f) for f in chunks.frames()] == [15, 5, 15, 5]


def test_footer_problems_are_named_as_a_whole_read_names_them(tmp_path):
    spec = _spec()
    landing = tmp_path / "landing"
    folder = partition_dir(landing, PARTITION)
    folder.mkdir(parents=True)
    _frame().to_parquet(folder / "a.parquet", index=False)
    _frame().drop(columns=["tailnum"]).assign(gate="B").to_parquet(folder / "b.parquet", index=False)
    landed = find_delivery(spec, landing, PARTITION)
    _, problems = read_partition(spec, landed)
    assert parquet_chunks(spec, landed, 10)[1] == problems
    assert problems == ["file b.parquet: columns differ from file a.parquet's: lacks tailnum; adds gate"]


def test_a_csv_delivery_is_read_whole(tmp_path):
    spec = _spec(row_count={"min": 1, "max": 100})
    folder = partition_dir(tmp_path / "landing", PARTITION)
    folder.mkdir(parents=True)
    _frame().to_csv(folder / "a.csv", index=False)
    assert parquet_chunks(spec, find_delivery(spec, tmp_path / "landing", PARTITION), 5) == (None, [])


def test_key_hashes_find_repeats_across_chunks_and_skip_rows_without_a_key():
    chunks = [
        pd.DataFrame({"a": ["x", "y", None], "b": [1, 2, None], "c": 0}, index=[0, 1, 2]),
        pd.DataFrame({"a": ["y", "z", None], "b": [2, 3, None], "c": 0}, index=[3, 4, 5]),
    ]
    keys = KeyDuplicates(["a", "b"])
    for offset, chunk in zip((0, 3), chunks, strict=True):
        keys.add(chunk, offset)
    assert list(keys.repeated()) == [1, 3]
    candidates = keys.candidates(chunks)
    assert list(candidates.index) == [1, 3]
    assert candidates.to_dict("list") == {"a": ["y", "y"], "b": [2, 2]}
    assert keys.missing == 2
    single = KeyDuplicates(["a"])
    single.add(pd.DataFrame({"a": [1, 2, 3]}), 0)
    assert single.candidates([]) is None


def test_the_result_fields_are_gx_s_for_an_empty_and_a_full_count():
    assert map_result(0, 0, 0, [], [], with_missing=True)["unexpected_percent"] is None
    full = map_result(4, 3, 1, ["q"], [2], with_missing=True)
    assert full["missing_percent"] == 25.0 and full["unexpected_percent"] == pytest.approx(100 / 3)
    assert full["partial_unexpected_counts"] == [{"value": "q", "count": 1}]


def _files(frames: list[pd.DataFrame], landing: Path, schemas: list | None = None) -> None:
    """Each frame as one Parquet file of the delivery, with its own Arrow schema if given (writers differ)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = partition_dir(landing, PARTITION)
    folder.mkdir(parents=True)
    for number, frame in enumerate(frames):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if schemas is not None:
            table = table.cast(schemas[number])
        pq.write_table(table, folder / f"part-{number}.parquet")


def _judged_both_ways(spec: ModelSpec, tmp_path: Path, chunk_rows: int = 7):
    landed = find_delivery(spec, tmp_path / "landing", PARTITION)
    whole, problems = read_partition(spec, landed)
    assert not problems
    chunks, problems = parquet_chunks(spec, landed, chunk_rows)
    assert chunks is not None and not problems
    kwargs = {"batch_key": PARTITION, "results_dir": tmp_path / "results", "interval": INTERVAL}
    return validate_frame(whole, spec, **kwargs), validate_chunks(
        chunks.frames(), spec, key_columns=chunks.frames, **kwargs
    )


@pytest.mark.parametrize("column", ["flight", "time_hour"])
def test_a_key_repeated_across_files_that_hold_it_in_different_types_is_found(tmp_path, column):
    import pyarrow as pa

    frame = _frame()
    first, second = frame.iloc[:20], frame.iloc[20:].copy()
    second.iloc[5] = first.iloc[3]  # the same key in the second file
    schema = pa.Schema.from_pandas(first, preserve_index=False)
    other = schema.set(
        schema.get_field_index(column),
        pa.field(column, pa.int32() if column == "flight" else pa.timestamp("ms", tz="UTC")),
    )
    _files([first, second], tmp_path / "landing", [schema, other])
    whole, chunked = _judged_both_ways(_spec(), tmp_path)
    assert whole.failures[0].startswith("key (carrier, flight): 2 row(s) share their key")
    assert chunked.failures == whole.failures
    assert _checks(chunked) == _checks(whole)


def test_times_as_text_that_parse_per_chunk_but_not_per_file_are_judged_as_a_whole_read_judges_them(tmp_path):
    frame = _frame()
    text = frame["time_hour"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    # The first 21 rows without a zone, the rest with one: each chunk of 7 parses, the file's column does not.
    frame["time_hour"] = text.where(frame.index < 21, text + "Z")
    _files([frame], tmp_path / "landing")
    whole, chunked = _judged_both_ways(_spec(), tmp_path)
    assert not whole.passed and any("expected timestamp" in f for f in whole.failures)
    assert chunked.failures == whole.failures


def test_a_frame_with_any_index_is_validated_whole(tmp_path):
    frame = _frame().set_axis([f"r{i}" for i in range(40)])
    outcome = validate_frame(frame, _spec(), batch_key=PARTITION, results_dir=tmp_path)
    assert outcome.passed, outcome.failures


def test_a_file_that_fails_part_way_is_named_not_a_crash(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    landing = tmp_path / "landing"
    folder = partition_dir(landing, PARTITION)
    folder.mkdir(parents=True)
    frame = _frame()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "a.parquet", row_group_size=10)
    data = bytearray((folder / "a.parquet").read_bytes())
    data[200:600] = bytes(400)  # pages of the first row groups overwritten; the footer intact
    (folder / "a.parquet").write_bytes(bytes(data))
    spec = _spec()
    chunks, problems = parquet_chunks(spec, find_delivery(spec, landing, PARTITION), 7)
    assert chunks is not None and not problems
    with pytest.raises(UnreadableChunk, match=r"^file a\.parquet: cannot be read as parquet: "):
        validate_chunks(
            chunks.frames(), spec, batch_key=PARTITION, results_dir=tmp_path, key_columns=chunks.frames
        )


def test_a_footer_that_cannot_be_read_is_named_at_once(tmp_path):
    landing = tmp_path / "landing"
    _deliver(_frame(), landing, files=2)
    part = partition_dir(landing, PARTITION) / "part-1.parquet"
    part.write_bytes(part.read_bytes()[:-20])
    spec = _spec()
    chunks, problems = parquet_chunks(spec, find_delivery(spec, landing, PARTITION), 7)
    assert chunks is None
    assert len(problems) == 1 and problems[0].startswith("file part-1.parquet: cannot be read as parquet: ")
