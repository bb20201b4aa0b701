"""The delivery protocol of a landing source: a manifest listing the data files with rows and SHA-256 (a delivery
that disagrees with it is refused, naming the file), and Spark-style part-file folders read as one file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from airloop.core.spec import load_spec
from airloop.ingest.landing import file_problems, find_delivery, is_landed, read_partition
from airloop.ingest.manifest import delivery_problems, read_manifest
from airloop.local.demo.replay import day_frame

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DAY = "2013-01-02"


def _spec(**source):
    spec = load_spec(ROOT / "config" / "models" / "flights_delay.yaml")
    raw = spec.model_dump()
    raw["source"].update(source)
    return type(spec).model_validate(raw)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return day_frame(date(2013, 1, 2))


def _manifest(folder: Path, files: dict[str, int], name: str = "_manifest.json") -> dict:
    """What a writer would write for ``files`` ({name in the partition: rows})."""
    body = {
        "writer": "test",
        "files": [
            {"name": n, "rows": rows, "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest()}
            for n, rows in files.items()
        ],
    }
    (folder / name).write_text(json.dumps(body))
    return body


def _deliver(tmp_path: Path, frame: pd.DataFrame, halves: bool = False) -> Path:
    folder = tmp_path / f"date={DAY}"
    folder.mkdir()
    if halves:
        frame.iloc[:300].to_parquet(folder / "a.parquet", index=False)
        frame.iloc[300:].to_csv(folder / "b.csv", index=False)
    else:
        frame.to_parquet(folder / "flights.parquet", index=False)
    return folder


def _problems(spec, tmp_path) -> list[str]:
    landed = find_delivery(spec, tmp_path, DAY)
    problems = file_problems(spec, landed)
    if not problems:
        _frame, problems = read_partition(spec, landed)
    return problems


def test_with_a_manifest_the_partition_lands_with_it_and_a_matching_delivery_passes(tmp_path, frame):
    spec = _spec(manifest="_manifest.json")
    folder = _deliver(tmp_path, frame, halves=True)
    assert spec.source.ready_file == "_manifest.json"
    assert not is_landed(tmp_path, DAY, spec.source.ready_file)
    _manifest(folder, {"a.parquet": 300, "b.csv": len(frame) - 300})
    assert is_landed(tmp_path, DAY, spec.source.ready_file)

    landed = find_delivery(spec, tmp_path, DAY)
    assert file_problems(spec, landed) == []
    read, problems = read_partition(spec, landed)
    assert problems == [] and len(read) == len(frame)
    assert landed.manifest == folder / "_manifest.json"


def test_the_manifest_is_part_of_the_fingerprint(tmp_path, frame):
    spec = _spec(manifest="_manifest.json")
    folder = _deliver(tmp_path, frame)
    _manifest(folder, {"flights.parquet": len(frame)})
    before = find_delivery(spec, tmp_path, DAY).checksum
    _manifest(folder, {"flights.parquet": len(frame) + 1})
    assert find_delivery(spec, tmp_path, DAY).checksum != before


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing_file", "manifest _manifest.json lists c.parquet, not delivered"),
        ("extra_file", "file extra.csv delivered but not listed in manifest _manifest.json"),
        ("changed_bytes", "file b.csv: SHA-256 "),
        ("wrong_rows", "file a.parquet: 300 row(s) read, manifest _manifest.json says 301"),
        ("not_json", "manifest _manifest.json: not valid JSON"),
        ("no_sha", "manifest _manifest.json: field files.0.sha256: Field required"),
        (
            "bad_rows",
            "manifest _manifest.json: field files.1.rows: Input should be greater than or equal to 0",
        ),
        ("listed_twice", "manifest _manifest.json: lists a.parquet more than once"),
        ("no_manifest", "manifest _manifest.json: not delivered (the source declares one)"),
        ("manifest_link", "manifest _manifest.json: not a regular file; links are not followed"),
    ],
)
def test_a_delivery_that_disagrees_with_its_manifest_is_refused_naming_the_file(
    tmp_path, frame, damage, expected
):
    spec = _spec(manifest="_manifest.json")
    folder = _deliver(tmp_path, frame, halves=True)
    files = {"a.parquet": 300, "b.csv": len(frame) - 300}
    body = _manifest(folder, files)
    manifest = folder / "_manifest.json"
    if damage == "missing_file":
        body["files"].append({"name": "c.parquet", "rows": 1, "sha256": "0" * 64})
        manifest.write_text(json.dumps(body))
    elif damage == "extra_file":
        (folder / "extra.csv").write_text((folder / "b.csv").read_text())
    elif damage == "changed_bytes":
        (folder / "b.csv").write_text((folder / "b.csv").read_text()[:-200])  # cut after the manifest
    elif damage == "wrong_rows":
        body["files"][0]["rows"] = 301
        manifest.write_text(json.dumps(body))
    elif damage == "not_json":
        manifest.write_text("{files: [")
    elif damage == "no_sha":
        del body["files"][0]["sha256"]
        manifest.write_text(json.dumps(body))
    elif damage == "bad_rows":
        body["files"][1]["rows"] = -5
        manifest.write_text(json.dumps(body))
    elif damage == "listed_twice":
        body["files"].append(body["files"][0])
        manifest.write_text(json.dumps(body))
    elif damage == "no_manifest":
        manifest.unlink()
    elif damage == "manifest_link":
        manifest.rename(tmp_path / "elsewhere.json")
        manifest.symlink_to(tmp_path / "elsewhere.json")
    problems = _problems(spec, tmp_path)
    assert any(p.startswith(expected) for p in problems), problems


def test_manifest_problems_name_at_most_five_files_then_count():
    from airloop.ingest.manifest import Manifest

    manifest = Manifest("_m.json", rows={}, sha256={})
    received = {f"f{i}.csv": "a" * 64 for i in range(8)}
    assert delivery_problems(manifest, received) == [
        "files f0.csv, f1.csv, f2.csv, f3.csv, f4.csv and 3 more delivered but not listed in manifest _m.json"
    ]


def test_a_manifest_may_carry_keys_of_its_own_and_hex_in_any_case(tmp_path):
    path = tmp_path / "_m.json"
    path.write_text(
        json.dumps({"created": "now", "files": [{"name": "a.csv", "rows": 3, "sha256": "AB" * 32, "x": 1}]})
    )
    manifest, problems = read_manifest(path)
    assert problems == [] and manifest.sha256 == {"a.csv": "ab" * 32} and manifest.rows == {"a.csv": 3}


def _spark_folder(folder: Path, frame: pd.DataFrame, fmt: str = "parquet") -> Path:
    """What Spark writes for df.write.parquet(".../flights.parquet"): part files, .crc checksums, _SUCCESS."""
    data = folder / f"flights.{fmt}"
    data.mkdir(parents=True)
    for i, (start, stop) in enumerate([(0, 250), (250, 500), (500, len(frame))]):
        part = data / f"part-0000{i}-3f2a.c000.snappy.{fmt}"
        if fmt == "parquet":
            frame.iloc[start:stop].to_parquet(part, index=False)
        else:
            frame.iloc[start:stop].to_csv(part, index=False)
        (data / f".{part.name}.crc").write_bytes(b"crc")
    (data / "_SUCCESS").touch()
    (folder / "_SUCCESS").touch()
    return data


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_spark_part_file_folder_is_read_as_one_file_when_the_source_says_so(tmp_path, frame, fmt):
    folder = tmp_path / f"date={DAY}"
    _spark_folder(folder, frame, fmt)

    plain = _spec()
    assert _problems(plain, tmp_path) == [f"flights.{fmt}: a folder; files in nested folders are not read"]

    spec = _spec(part_folders=True)
    landed = find_delivery(spec, tmp_path, DAY)
    assert [name for name, _ in landed.data_files()] == [
        f"flights.{fmt}/part-0000{i}-3f2a.c000.snappy.{fmt}" for i in range(3)
    ]
    assert file_problems(spec, landed) == []
    read, problems = read_partition(spec, landed)
    assert problems == [] and len(read) == len(frame)
    assert read["flight"].tolist() == frame["flight"].tolist()  # the parts in order


def test_a_part_file_folder_holds_part_files_only_and_is_fingerprinted_by_their_bytes(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    data = _spark_folder(folder, frame)
    spec = _spec(part_folders=True)
    before = find_delivery(spec, tmp_path, DAY).checksum
    part = data / "part-00001-3f2a.c000.snappy.parquet"
    frame.iloc[250:499].to_parquet(part, index=False)
    assert find_delivery(spec, tmp_path, DAY).checksum != before

    (data / "nested").mkdir()
    (data / "link.parquet").symlink_to(part)
    assert _problems(spec, tmp_path) == [
        "flights.parquet/link.parquet: a symbolic link; a part-file folder holds part files only",
        "flights.parquet/nested: a folder; a part-file folder holds part files only",
    ]


def test_an_empty_part_file_folder_and_a_manifest_of_part_files(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    (folder / "flights.parquet").mkdir(parents=True)
    (folder / "flights.parquet" / "_SUCCESS").touch()
    spec = _spec(part_folders=True, manifest="_manifest.json")
    assert "flights.parquet: a part-file folder with no part file" in _problems(spec, tmp_path)

    shutil.rmtree(folder)
    data = _spark_folder(folder, frame)
    parts = sorted(p.name for p in data.glob("part-*"))
    _manifest(
        folder, {f"flights.parquet/{p}": n for p, n in zip(parts, [250, 250, len(frame) - 500], strict=True)}
    )
    assert _problems(spec, tmp_path) == []


def test_files_of_one_partition_with_different_columns_are_named(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    folder.mkdir()
    frame.iloc[:300].to_parquet(folder / "a.parquet", index=False)
    frame.iloc[300:].drop(columns=["carrier"]).assign(gate=1).to_parquet(folder / "b.parquet", index=False)
    assert _problems(_spec(), tmp_path) == [
        "file b.parquet: columns differ from file a.parquet's: lacks carrier; adds gate"
    ]


def test_a_csv_header_naming_a_column_twice_is_named(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    folder.mkdir()
    (folder / "flights.csv").write_text("carrier,flight,carrier\nUA,1,UA\n")
    assert _problems(_spec(), tmp_path) == [
        "file flights.csv, line 1: the header names column(s) 'carrier' twice"
    ]


def test_with_part_folders_the_marker_spark_writes_inside_each_folder_lands_the_partition(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    _spark_folder(folder, frame)
    (folder / "_SUCCESS").unlink()  # Spark writes it inside flights.parquet/ only
    assert not is_landed(tmp_path, DAY, "_SUCCESS")
    assert is_landed(tmp_path, DAY, "_SUCCESS", part_folders=True)
    second = folder / "more.parquet"
    second.mkdir()
    frame.head(3).to_parquet(second / "part-00000.parquet", index=False)
    assert not is_landed(tmp_path, DAY, "_SUCCESS", part_folders=True)  # one folder still being written
    (second / "_SUCCESS").touch()
    assert is_landed(tmp_path, DAY, "_SUCCESS", part_folders=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root examines folders without search permission")
def test_a_part_folder_without_search_permission_is_a_problem_not_a_crash(tmp_path, frame):
    folder = tmp_path / f"date={DAY}"
    data = _spark_folder(folder, frame)
    data.chmod(0o644)
    try:
        problems = _problems(_spec(part_folders=True), tmp_path)
    finally:
        data.chmod(0o755)
    assert any("cannot be examined" in p for p in problems), problems
