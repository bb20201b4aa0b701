from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from airloop.core.errors import SourceError
from airloop.core.spec import load_spec
from airloop.ingest.landing import file_problems, find_partition, is_landed, read_partition
from airloop.local.demo.replay import day_frame, write_partition

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


def test_missing_partition_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(SourceError, match="partition 2013-01-01: folder .*date=2013-01-01 does not exist"):
        find_partition(tmp_path, "2013-01-01")
    assert not is_landed(tmp_path, "2013-01-01")


def test_empty_folder_has_no_data_file(tmp_path, spec):
    (tmp_path / "date=2013-01-01").mkdir()
    (tmp_path / "date=2013-01-01" / "_SUCCESS").touch()
    assert not is_landed(tmp_path, "2013-01-01")
    assert file_problems(spec, find_partition(tmp_path, "2013-01-01")) == [
        f"partition folder {tmp_path / 'date=2013-01-01'} holds no data file"
    ]


def test_file_problems_name_the_file(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "b.csv").write_text("")
    problems = file_problems(spec, find_partition(tmp_path, "2013-01-01"))
    assert problems == [
        "file a.json: format .json not accepted (expected parquet, csv)",
        "file b.csv: empty (0 bytes)",
    ]


def test_unreadable_parquet_is_reported(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "x.parquet").write_bytes(b"not parquet at all")
    frame, problems = read_partition(spec, find_partition(tmp_path, "2013-01-01"))
    assert frame is None
    assert problems[0].startswith("file x.parquet: cannot be read as parquet")


def test_checksum_changes_with_content(tmp_path):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    first = find_partition(tmp_path, "2013-01-01").checksum
    assert find_partition(tmp_path, "2013-01-01").checksum == first
    (folder / "a.csv").write_text("x\n2\n")
    assert find_partition(tmp_path, "2013-01-01").checksum != first


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_replayed_day_reads_back_with_types(tmp_path, spec, fmt):
    day = date(2013, 1, 5)
    expected = day_frame(day)
    write_partition(expected, tmp_path, day, fmt)
    assert is_landed(tmp_path, "2013-01-05")
    landed = find_partition(tmp_path, "2013-01-05")
    assert [f.name for f in landed.files] == [f"flights.{fmt}"]
    frame, problems = read_partition(spec, landed)
    assert problems == []
    assert len(frame) == len(expected) == 720
    assert str(frame["time_hour"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_series_equal(frame["arr_delay"], expected["arr_delay"])


def test_csv_timestamp_that_does_not_parse_stays_text(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "a.csv").write_text("time_hour,month\n2013-01-01T05:00:00Z,1\nyesterday,1\n")
    frame, _ = read_partition(spec, find_partition(tmp_path, "2013-01-01"))
    assert frame["time_hour"].dtype == object


def test_csv_text_column_that_is_all_empty_stays_text(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "a.csv").write_text("tailnum,month\n,1\n,2\n")
    frame, _ = read_partition(spec, find_partition(tmp_path, "2013-01-01"))
    assert frame["tailnum"].dtype == object and frame["month"].dtype == "int64"
