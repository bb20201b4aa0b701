"""The catalogue of bad deliveries, each run through the real ingest DAG (``dag.test()``, SQLite warehouse).

Every case ends the same way, and each is checked: the run fails; the ledger records the day as quarantined with a
reason naming the file, column, row or field; the warehouse holds no row of it; everything received (data files,
part-file folders, the manifest) is kept in quarantine byte for byte, with the verdict; one e-mail and one Slack
message tell it, markup from the data escaped; one quarantine event is logged. More cases, with checks of their
own, are in ``test_ingest_dag.py`` (wrong types, missing columns, links, FIFOs, NUL characters, rows of other days,
days delivered twice, a bad re-delivery of a good day, a missing completion marker).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ingest_runs import DAY, landing, ledger, run, sa_has_rows

from airloop.core.events import EventKind
from airloop.local.demo.replay import day_frame
from airloop.store.events import events_of

pytestmark = pytest.mark.integration

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Bad:
    """A bad delivery: ``make`` writes it into the (new) partition folder; ``expected`` is in the reason."""

    make: Callable[[Path], None]
    expected: str
    #: Changes to the spec's ``source`` (a manifest, part-file folders, a smaller file limit).
    source: dict[str, Any] = field(default_factory=dict)


def _frame() -> pd.DataFrame:
    return day_frame(DAY)


def _manifest(folder: Path, rows: dict[str, int]) -> dict:
    body = {
        "files": [
            {"name": name, "rows": n, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}
            for name, n in rows.items()
        ]
    }
    (folder / MANIFEST).write_text(json.dumps(body))
    return body


def _with_manifest(write: Callable[[Path], dict[str, int]], damage: Callable[[Path, dict], None]):
    def make(folder: Path) -> None:
        body = _manifest(folder, write(folder))
        damage(folder, body)

    return make


def _csv(folder: Path) -> dict[str, int]:
    frame = _frame()
    frame.to_csv(folder / "flights.csv", index=False)
    return {"flights.csv": len(frame)}


def _two_parquet(folder: Path) -> dict[str, int]:
    frame = _frame()
    frame.iloc[:400].to_parquet(folder / "a.parquet", index=False)
    frame.iloc[400:].to_parquet(folder / "b.parquet", index=False)
    return {"a.parquet": 400, "b.parquet": len(frame) - 400}


def _cut_at_a_line(folder: Path, _body: dict) -> None:
    data = (folder / "flights.csv").read_bytes()
    (folder / "flights.csv").write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])


def _rewrite(change: Callable[[dict], None]) -> Callable[[Path, dict], None]:
    def damage(folder: Path, body: dict) -> None:
        change(body)
        (folder / MANIFEST).write_text(json.dumps(body))

    return damage


def _manifest_as_link(folder: Path, _body: dict) -> None:
    (folder / MANIFEST).rename(folder.parent / "elsewhere.json")
    (folder / MANIFEST).symlink_to(folder.parent / "elsewhere.json")


def _parquet(frame: pd.DataFrame, name: str = "flights.parquet") -> Callable[[Path], None]:
    return lambda folder: frame.to_parquet(folder / name, index=False)


def _changed(
    change: Callable[[pd.DataFrame], pd.DataFrame | None], fmt: str = "parquet"
) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        frame = _frame()
        changed = change(frame)
        frame = frame if changed is None else changed
        if fmt == "parquet":
            frame.to_parquet(folder / "flights.parquet", index=False)
        else:
            frame.to_csv(folder / "flights.csv", index=False)

    return make


def _set(column: str, value: Any, rows: slice | list[int] = [4], dtype: Any = None):  # noqa: B006 - read only
    def change(frame: pd.DataFrame) -> None:
        if dtype is not None:
            frame[column] = frame[column].astype(dtype)
        frame.loc[rows, column] = value

    return change


def _spark_folder(folder: Path, *, extra: Callable[[Path], None] | None = None, parts: int = 3) -> None:
    data = folder / "flights.parquet"
    data.mkdir()
    frame = _frame()
    bounds = np.linspace(0, len(frame), parts + 1, dtype=int)
    for i in range(parts):
        part = data / f"part-{i:05d}-c0ffee.c000.snappy.parquet"
        frame.iloc[bounds[i] : bounds[i + 1]].to_parquet(part, index=False)
        (data / f".{part.name}.crc").write_bytes(b"crc")
    (data / "_SUCCESS").touch()
    if extra is not None:
        extra(data)


def _part_without_carrier(data: Path) -> None:
    part = data / "part-00001-c0ffee.c000.snappy.parquet"
    pd.read_parquet(part).drop(columns=["carrier"]).to_parquet(part, index=False)


def _latin1_csv(folder: Path) -> None:
    frame = _frame()
    frame["tailnum"] = frame["tailnum"].astype(object)
    frame.loc[2, "tailnum"] = "N\u00e9123"
    frame.to_csv(folder / "flights.csv", index=False, encoding="latin-1")


def _gzip_named_csv(folder: Path) -> None:
    (folder / "flights.csv").write_bytes(gzip.compress(_frame().to_csv(index=False).encode()))


def _half_parquet(folder: Path) -> None:
    _frame().to_parquet(folder / "flights.parquet", index=False)
    data = (folder / "flights.parquet").read_bytes()
    (folder / "flights.parquet").write_bytes(data[: len(data) // 2])


def _duplicate_header(folder: Path) -> None:
    text = _frame().to_csv(index=False)
    header, rest = text.split("\n", 1)
    (folder / "flights.csv").write_text(header.replace("tailnum", "carrier") + "\n" + rest)


def _partition_folder_link(folder: Path) -> None:
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    _frame().to_parquet(elsewhere / "flights.parquet", index=False)
    (elsewhere / "_SUCCESS").touch()
    folder.rmdir()
    folder.symlink_to(elsewhere)


CATALOGUE: dict[str, Bad] = {
    # The writer's manifest against what arrived.
    "csv_cut_at_a_line_boundary": Bad(
        _with_manifest(_csv, _cut_at_a_line),
        "file flights.csv: SHA-256 ",
        {"manifest": MANIFEST},
    ),
    "manifest_lists_a_file_never_delivered": Bad(
        _with_manifest(_two_parquet, lambda f, b: (f / "b.parquet").unlink()),
        f"manifest {MANIFEST} lists b.parquet, not delivered",
        {"manifest": MANIFEST},
    ),
    "a_file_the_manifest_does_not_list": Bad(
        _with_manifest(
            _two_parquet, lambda f, b: _frame().head(5).to_parquet(f / "late.parquet", index=False)
        ),
        f"file late.parquet delivered but not listed in manifest {MANIFEST}",
        {"manifest": MANIFEST},
    ),
    "row_count_differs_from_the_manifest": Bad(
        _with_manifest(
            _two_parquet, _rewrite(lambda b: b["files"][1].update(rows=b["files"][1]["rows"] + 7))
        ),
        f"row(s) read, manifest {MANIFEST} says",
        {"manifest": MANIFEST},
    ),
    "manifest_not_json": Bad(
        _with_manifest(_two_parquet, lambda f, b: (f / MANIFEST).write_text("{'files': [")),
        f"manifest {MANIFEST}: not valid JSON",
        {"manifest": MANIFEST},
    ),
    "manifest_without_checksums": Bad(
        _with_manifest(_two_parquet, _rewrite(lambda b: [e.pop("sha256") for e in b["files"]])),
        f"manifest {MANIFEST}: field files.0.sha256: Field required",
        {"manifest": MANIFEST},
    ),
    "manifest_is_a_link": Bad(
        _with_manifest(_two_parquet, _manifest_as_link),
        f"manifest {MANIFEST}: not a regular file; links are not followed",
        {"manifest": MANIFEST},
    ),
    # Spark-style part-file folders.
    "part_folder_holding_a_link": Bad(
        lambda f: _spark_folder(f, extra=lambda d: (d / "part-00009.parquet").symlink_to("/etc/hostname")),
        "flights.parquet/part-00009.parquet: a symbolic link; a part-file folder holds part files only",
        {"part_folders": True},
    ),
    "part_folder_without_parts": Bad(
        lambda f: ((f / "flights.parquet").mkdir(), (f / "flights.parquet" / "_SUCCESS").touch()),
        "flights.parquet: a part-file folder with no part file",
        {"part_folders": True},
    ),
    "part_file_missing_a_column": Bad(
        lambda f: _spark_folder(f, extra=_part_without_carrier),
        "file flights.parquet/part-00001-c0ffee.c000.snappy.parquet: columns differ from file "
        "flights.parquet/part-00000-c0ffee.c000.snappy.parquet's: lacks carrier",
        {"part_folders": True},
    ),
    # Files the contract does not read.
    "undeclared_format": Bad(
        lambda f: (f / "flights.json").write_text(_frame().to_json()),
        "file flights.json: format .json not accepted (expected parquet, csv)",
    ),
    "file_without_a_suffix": Bad(
        lambda f: _frame().to_parquet(f / "flights", index=False),
        "file flights: format (none) not accepted",
    ),
    "file_larger_than_the_limit": Bad(_parquet(_frame()), "file flights.parquet: ", {"max_file_mb": 0.001}),
    "garbage_named_parquet": Bad(
        lambda f: (f / "flights.parquet").write_bytes(os.urandom(4096)),
        "file flights.parquet: cannot be read as parquet",
    ),
    "parquet_cut_in_half": Bad(_half_parquet, "file flights.parquet: cannot be read as parquet"),
    "csv_not_utf8": Bad(_latin1_csv, "file flights.csv: cannot be read as csv"),
    "gzip_bytes_named_csv": Bad(_gzip_named_csv, "file flights.csv: cannot be read as csv"),
    "partition_folder_is_a_link": Bad(_partition_folder_link, "is a symbolic link (to "),
    # Columns.
    "an_unexpected_column": Bad(_changed(lambda fr: fr.assign(gate=1)), "unexpected column(s): gate"),
    "a_column_renamed": Bad(
        _changed(lambda fr: fr.rename(columns={"carrier": "Carrier"})), "missing column(s): carrier"
    ),
    "a_header_naming_a_column_twice": Bad(
        _duplicate_header, "file flights.csv, line 1: the header names column(s) 'carrier' twice"
    ),
    "markup_in_a_column_name": Bad(
        _changed(lambda fr: fr.assign(**{"<script>alert(1)</script>": 1})),
        "unexpected column(s): <script>alert(1)</script>",
    ),
    # Values.
    "value_above_the_contract_range": Bad(
        _changed(_set("dep_delay", 99999.0)),
        "column 'dep_delay': 1 value(s) outside [-120, 1800], e.g. [99999.0]",
    ),
    "infinite_value": Bad(
        _changed(_set("dep_delay", np.inf)), "column 'dep_delay': 1 value(s) outside [-120, 1800], e.g. [inf]"
    ),
    "markup_in_a_value": Bad(
        _changed(_set("carrier", "<script>alert(1)</script>")),
        "column 'carrier': 1 value(s) not in allowed set",
    ),
    "null_in_a_required_column": Bad(_changed(_set("origin", None)), "column 'origin': 1 null value(s)"),
    "target_entirely_null": Bad(
        _changed(_set("arr_delay", np.nan, slice(None))),
        "column 'arr_delay': 943 null value(s) (100.00% of rows; at most 80.00% allowed)",
    ),
    "time_that_is_no_time": Bad(
        _changed(_set("time_hour", "soon", [9], dtype=object), fmt="csv"),
        "column 'time_hour': 1 value(s) not a time, e.g. ['soon'] (_row 9)",
    ),
}


def _received(folder: Path) -> dict[str, bytes]:
    """Every regular file delivered (in part-file folders too), by path in the partition; the marker aside."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.relative_to(folder).as_posix() != "_SUCCESS":
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", list(CATALOGUE))
def test_a_bad_delivery_is_quarantined_whole_naming_what_is_wrong(env, models_dir, case):
    config, spec, engine, catcher = env
    bad = CATALOGUE[case]
    if bad.source:
        path = models_dir / "flights_delay.yaml"
        raw = json.loads(path.read_text())
        raw["source"].update(bad.source)
        path.write_text(json.dumps(raw))
    folder = landing(config) / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    bad.make(folder)
    if "manifest" not in bad.source and not folder.is_symlink():
        (folder / "_SUCCESS").touch()  # the writer says the partition is whole
    received = _received(folder.resolve() if folder.is_symlink() else folder)

    assert run(DAY) == "failed"

    row = ledger(engine)[DAY.isoformat()]
    print(f"{case}: {row.reason}")
    assert row.status == "quarantined"
    assert bad.expected in row.reason, row.reason
    assert not sa_has_rows(engine, spec)
    kept = Path(row.quarantine_path)
    verdict = json.loads((kept / "verdict.json").read_text())
    assert verdict["reason"] == row.reason and verdict["passed"] is False
    if (
        not folder.is_symlink()
    ):  # a linked partition folder is never followed, so nothing in it is read or kept
        for name, data in received.items():
            assert (kept / name).read_bytes() == data, f"{name} not kept as received"
    [mail] = catcher.emails()
    assert f"batch {DAY.isoformat()} quarantined" in mail["Subject"]
    assert "<script>" not in mail.get_body(("html",)).get_content()
    [hook] = catcher.webhooks()
    assert "<script>" not in hook["text"]
    kinds = [e.kind for e in events_of(engine, "flights_delay")]
    assert kinds.count(EventKind.QUARANTINE) == 1
