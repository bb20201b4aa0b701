from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from airloop.core.errors import SourceError
from airloop.core.spec import load_spec
from airloop.ingest.landing import file_problems, find_partition, is_landed, keep_entry, read_partition
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


def test_a_partition_folder_that_is_a_link_is_landed_but_not_followed(tmp_path, spec):
    real = write_partition(day_frame(date(2013, 1, 1)), tmp_path / "elsewhere", date(2013, 1, 1))
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "date=2013-01-01").symlink_to(real)
    landed = find_partition(tmp_path / "landing", "2013-01-01")
    assert is_landed(tmp_path / "landing", "2013-01-01")
    assert landed.files == () and landed.total_bytes == 0
    assert file_problems(spec, landed) == [
        f"partition folder {tmp_path / 'landing' / 'date=2013-01-01'} is a symbolic link (to {real}); "
        "links are not followed"
    ]


def test_a_link_counts_by_its_target_name_never_its_content(tmp_path):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (tmp_path / "a.csv").write_text("x\n1\n")
    (folder / "flights.csv").symlink_to(tmp_path / "a.csv")
    first = find_partition(tmp_path, "2013-01-01")
    (tmp_path / "a.csv").write_text("x\n2\n")  # the content behind the link changes: not read, not counted
    assert find_partition(tmp_path, "2013-01-01").checksum == first.checksum
    (folder / "flights.csv").unlink()
    (folder / "flights.csv").symlink_to(tmp_path / "b.csv")  # the link itself changes
    assert find_partition(tmp_path, "2013-01-01").checksum != first.checksum
    assert first.total_bytes == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_an_unreadable_file_is_a_problem_not_a_crash(tmp_path, spec):
    folder = write_partition(day_frame(date(2013, 1, 1)), tmp_path, date(2013, 1, 1), "csv")
    (folder / "flights.csv").chmod(0)
    try:
        landed = find_partition(tmp_path, "2013-01-01")
        assert file_problems(spec, landed) == ["file flights.csv: cannot be read: Permission denied"]
        assert keep_entry(folder / "flights.csv", tmp_path / "kept.csv").startswith("flights.csv: not kept")
    finally:
        (folder / "flights.csv").chmod(0o644)


def test_keeping_an_entry_again_gives_the_same_copy(tmp_path):
    source = tmp_path / "in"
    (source / "part").mkdir(parents=True)
    (source / "part" / "a.bin").write_bytes(b"\x00\x01")
    (source / "part" / "link").symlink_to("/etc/passwd")
    (source / "link").symlink_to("/etc/hostname")
    for _ in range(2):
        assert keep_entry(source / "part", tmp_path / "out" / "part") is None
        assert keep_entry(source / "link", tmp_path / "out" / "link") is None
    assert (tmp_path / "out" / "part" / "a.bin").read_bytes() == b"\x00\x01"
    assert os.readlink(tmp_path / "out" / "part" / "link") == "/etc/passwd"
    assert os.readlink(tmp_path / "out" / "link") == "/etc/hostname"


def test_csv_lines_with_the_wrong_number_of_fields_are_named(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "flights.csv").write_text('a,b,c\n1,2,3\n"quoted\nnewline",2,3\n4,5\n6,7,8,9\n\n1,2,3\n')
    landed = find_partition(tmp_path, "2013-01-01")
    frame, problems = read_partition(spec, landed)
    assert frame is None
    assert problems == [
        "file flights.csv, line 5: 2 field(s), expected 3 (the header's)",
        "file flights.csv, line 6: 4 field(s), expected 3 (the header's)",
    ]


def test_naive_csv_times_are_read_in_the_contracts_zone_and_aware_ones_keep_their_instant(tmp_path, spec):
    raw = spec.model_dump()
    raw["contract"]["timezone"] = "America/New_York"
    local = type(spec).model_validate(raw)
    frame = day_frame(date(2013, 1, 1)).head(3)
    delivered = frame["time_hour"]
    folder = write_partition(
        frame.assign(time_hour=delivered.dt.tz_convert("America/New_York").dt.tz_localize(None)),
        tmp_path,
        date(2013, 1, 1),
        "csv",
    )
    read, problems = read_partition(local, find_partition(tmp_path, "2013-01-01"))
    assert problems == [] and read["time_hour"].tolist() == delivered.tolist()
    (folder / "flights.csv").unlink()
    write_partition(
        frame.assign(time_hour=delivered.dt.tz_convert("Asia/Tokyo")), tmp_path, date(2013, 1, 1), "csv"
    )
    read, problems = read_partition(local, find_partition(tmp_path, "2013-01-01"))
    assert problems == [] and read["time_hour"].tolist() == delivered.tolist()


def test_an_unknown_contract_timezone_is_refused(spec):
    raw = spec.model_dump()
    raw["contract"]["timezone"] = "Mars/Olympus"
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a time zone"):
        type(spec).model_validate(raw)


def test_with_a_completion_marker_a_partition_lands_when_the_marker_does(tmp_path, spec):
    folder = tmp_path / "date=2013-01-01"
    folder.mkdir()
    (folder / "flights.csv").write_text("x\n1\n")
    assert is_landed(tmp_path, "2013-01-01") and not is_landed(tmp_path, "2013-01-01", "_SUCCESS")
    (folder / "_SUCCESS").touch()
    assert is_landed(tmp_path, "2013-01-01", "_SUCCESS")
    assert find_partition(tmp_path, "2013-01-01").files == (folder / "flights.csv",)  # the marker is no data
    written = write_partition(day_frame(date(2013, 1, 2)), tmp_path, date(2013, 1, 2))
    assert sorted(p.name for p in written.iterdir()) == ["_SUCCESS", "flights.parquet"]
    assert spec.source.completion_marker == "_SUCCESS"


@pytest.mark.parametrize("marker", ["flights.csv", "_", "../_SUCCESS", "_a/b"])
def test_a_completion_marker_is_a_hidden_or_underscored_file_name(spec, marker):
    raw = spec.model_dump()
    raw["source"]["completion_marker"] = marker
    with pytest.raises(ValueError, match="completion_marker"):
        type(spec).model_validate(raw)


def test_keeping_a_file_replaces_a_link_left_at_the_target_never_writes_through_it(tmp_path):
    outside = tmp_path / "outside.cfg"
    outside.write_text("precious")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "flights.csv").symlink_to(
        outside
    )  # what an earlier delivery (a link) left in the quarantine folder
    delivered = tmp_path / "flights.csv"
    delivered.write_text("x\n1\n")
    assert keep_entry(delivered, kept / "flights.csv") is None
    assert outside.read_text() == "precious"
    assert not (kept / "flights.csv").is_symlink() and (kept / "flights.csv").read_text() == "x\n1\n"


def test_a_marker_of_dots_only_is_refused(spec):
    raw = spec.model_dump()
    raw["source"]["completion_marker"] = ".."
    with pytest.raises(ValueError, match="completion_marker"):
        type(spec).model_validate(raw)


def test_dictionary_encoded_parquet_columns_are_read_as_their_values(tmp_path, spec):
    """A pandas export keeps categorical columns as such; the contract checks their values, not the encoding."""
    frame = day_frame(date(2013, 1, 2))
    expected = frame.copy()
    frame["carrier"] = frame["carrier"].astype("category")
    frame["origin"] = frame["origin"].astype("category")
    frame.loc[3, "origin"] = None
    expected.loc[3, "origin"] = None
    write_partition(frame, tmp_path, date(2013, 1, 2))
    read, problems = read_partition(spec, find_partition(tmp_path, "2013-01-02"))
    assert problems == []
    assert read["carrier"].dtype == object and read["carrier"].tolist() == expected["carrier"].tolist()
    assert (
        read["origin"].isna().sum() == 1
        and read["origin"].dropna().tolist() == expected["origin"].dropna().tolist()
    )

    from airloop.ingest.landing import plain_values

    ints = pd.DataFrame({"n": pd.Categorical([1, None, 3])})
    assert plain_values(ints)["n"].tolist()[::2] == [1, 3]
