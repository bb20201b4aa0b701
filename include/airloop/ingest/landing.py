"""Reading a landed partition: ``<landing_dir>/<model>/date=YYYY-MM-DD/*.parquet|*.csv``.

File-level checks (format, size, readability) happen here, before Great Expectations sees the rows; each problem
names the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.core.errors import SourceError
from airloop.core.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class PartitionFiles:
    """The files of one landed partition, as received."""

    partition: str
    directory: Path
    files: tuple[Path, ...]
    checksum: str
    total_bytes: int


def partition_dir(landing: Path, partition: str) -> Path:
    """The folder a partition lands in."""
    return Path(landing) / f"date={partition}"


def find_partition(landing: Path, partition: str) -> PartitionFiles:
    """List a partition's files (hidden files and folders ignored) and fingerprint their content."""
    directory = partition_dir(landing, partition)
    if not directory.is_dir():
        raise SourceError(f"partition {partition}: folder {directory} does not exist")
    files = tuple(sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_"))))
    digest = hashlib.sha256()
    total = 0
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                total += len(chunk)
    return PartitionFiles(partition, directory, files, digest.hexdigest(), total)


def file_problems(spec: ModelSpec, landed: PartitionFiles) -> list[str]:
    """File-level contract violations: no data file, unsupported format, empty or oversized file."""
    if not landed.files:
        return [f"partition folder {landed.directory} holds no data file"]
    problems = []
    limit = int(spec.source.max_file_mb * 1024 * 1024)
    for file in landed.files:
        fmt = _SUFFIXES.get(file.suffix.lower())
        size = file.stat().st_size
        if fmt is None or fmt not in spec.source.formats:
            problems.append(
                f"file {file.name}: format {file.suffix or '(none)'} not accepted (expected {', '.join(spec.source.formats)})"
            )
        elif size == 0:
            problems.append(f"file {file.name}: empty (0 bytes)")
        elif size > limit:
            problems.append(f"file {file.name}: {size} bytes exceeds max_file_mb={spec.source.max_file_mb:g}")
    return problems


def read_partition(spec: ModelSpec, landed: PartitionFiles) -> tuple[pd.DataFrame | None, list[str]]:
    """Read every file of the partition into one frame; unreadable files are reported, not skipped."""
    import pandas as pd

    frames, problems = [], []
    timestamps = [c.name for c in spec.contract.columns if c.type == "timestamp"]
    # CSV carries no types: a text column that happens to be all empty must not turn into floats.
    text = {c.name: str for c in spec.contract.columns if c.type == "string"}
    for file in landed.files:
        fmt = _SUFFIXES[file.suffix.lower()]
        try:
            frame = (
                pd.read_parquet(file) if fmt == "parquet" else pd.read_csv(file, low_memory=False, dtype=text)
            )
        except Exception as exc:  # noqa: BLE001 - any parser error is a property of the received file
            problems.append(f"file {file.name}: cannot be read as {fmt}: {type(exc).__name__}: {exc}")
            continue
        if fmt == "csv":
            frame = parse_timestamps(frame, timestamps)
        frames.append(frame)
    if problems:
        return None, problems
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], []


def parse_timestamps(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` read as instants (UTC) where they came as text: CSV has no timestamp type, and SQLite returns
    timestamps as text. A column that does not parse is left as text, so the type check names it."""
    import pandas as pd

    for column in columns:
        if column in frame.columns and frame[column].dtype == object:
            try:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
            except (ValueError, TypeError):
                pass
    return frame


def land_frame(frame: pd.DataFrame, landing: Path, partition: str, name: str, fmt: str = "parquet") -> Path:
    """Deliver ``frame`` as a partition's only file (``<name>.<fmt>``), atomically: written in a hidden folder
    beside the partition's, which then replaces it, so a reader never sees half a delivery."""
    target = partition_dir(landing, partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        file = staging / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(file, index=False)
        elif fmt == "csv":
            frame.to_csv(file, index=False)
        else:
            raise ValueError(f"format {fmt!r}: deliveries are parquet or csv")
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def is_landed(landing: Path, partition: str) -> bool:
    """Whether a partition's folder exists and holds at least one file (hidden and ``_`` files aside)."""
    directory = partition_dir(landing, partition)
    try:
        return any(p.is_file() and not p.name.startswith((".", "_")) for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
