"""Reading a landed partition: ``<landing_dir>/<model>/date=YYYY-MM-DD/*.parquet|*.csv``.

File-level checks (format, size, readability) happen here, before Great Expectations sees the rows; each problem
names the file. The landing folder is a boundary: symbolic links are never followed (a link to a file elsewhere,
or to a system file, is reported, not read), and nested folders, special files (a FIFO would block a reader) and
unreadable files are problems of the delivery, quarantined with their reason, never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
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
    #: Every entry of the folder as received (hidden and ``_`` names aside): data files, and whatever else was
    #: delivered (links, folders), which ``problems`` then names.
    files: tuple[Path, ...]
    checksum: str
    total_bytes: int
    #: What is wrong with entries that are not readable regular files, one line each, naming the entry.
    problems: tuple[str, ...] = ()


def partition_dir(landing: Path, partition: str) -> Path:
    """The folder a partition lands in."""
    return Path(landing) / f"date={partition}"


def find_partition(landing: Path, partition: str) -> PartitionFiles:
    """List a partition's entries (hidden ones aside) and fingerprint them, following no link.

    A regular file counts by its name and bytes; a link by its target's name (never its content), a folder by the
    names, sizes and times of what it holds, an unreadable file by its size and time: the fingerprint still
    changes when any of them does.
    """
    directory = partition_dir(landing, partition)
    if directory.is_symlink():
        target = os.readlink(directory)
        digest = hashlib.sha256(b"link\0" + os.fsencode(target)).hexdigest()
        problem = f"partition folder {directory} is a symbolic link (to {target}); links are not followed"
        return PartitionFiles(partition, directory, (), digest, 0, (problem,))
    if not directory.is_dir():
        raise SourceError(f"partition {partition}: folder {directory} does not exist")
    try:
        entries = tuple(sorted(p for p in directory.iterdir() if not p.name.startswith((".", "_"))))
    except OSError as exc:
        digest = hashlib.sha256(f"unlistable\0{exc.errno}".encode()).hexdigest()
        problem = f"partition folder {directory} cannot be listed: {exc.strerror or exc}"
        return PartitionFiles(partition, directory, (), digest, 0, (problem,))
    digest = hashlib.sha256()
    total = 0
    problems = []
    for entry in entries:
        digest.update(entry.name.encode() + b"\0")
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(entry)
            digest.update(b"link\0" + os.fsencode(target))
            problems.append(f"{entry.name}: a symbolic link (to {target}); links are not followed")
        elif stat.S_ISDIR(mode):
            digest.update(b"folder\0" + _listing(entry))
            problems.append(f"{entry.name}: a folder; files in nested folders are not read")
        elif not stat.S_ISREG(mode):
            digest.update(b"special\0")
            problems.append(f"{entry.name}: not a regular file")
        else:
            try:
                with entry.open("rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                        total += len(chunk)
            except OSError as exc:
                info = entry.lstat()
                digest.update(f"unreadable\0{info.st_size}\0{info.st_mtime_ns}".encode())
                problems.append(f"file {entry.name}: cannot be read: {exc.strerror or exc}")
    return PartitionFiles(partition, directory, entries, digest.hexdigest(), total, tuple(problems))


def _listing(folder: Path) -> bytes:
    """What a folder holds, as names, kinds, sizes and times, recursively, following no link."""
    lines = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names) + dirs:
            info = os.lstat(os.path.join(root, name))
            where = os.path.relpath(os.path.join(root, name), folder)
            lines.append(f"{where}\0{stat.S_IFMT(info.st_mode)}\0{info.st_size}\0{info.st_mtime_ns}")
    return "\n".join(lines).encode()


def keep_entry(entry: Path, target: Path) -> str | None:
    """Copy one received entry to ``target`` as it was received: a file byte for byte, a link as a link (never
    what it points to), a folder with everything in it (links kept as links). Returns why it could not be kept
    (an unreadable file, a special file), or None. Copying again over an earlier copy gives the same result."""
    mode = entry.lstat().st_mode
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(mode):
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(os.readlink(entry), target)
        elif stat.S_ISDIR(mode):
            # Copied beside the target, then swapped in: an earlier copy (the same delivery quarantined again)
            # is replaced whole, and no half copy is ever left under the target's name.
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                shutil.copytree(entry, staging / "copy", symlinks=True)
                if target.exists():
                    shutil.rmtree(target)
                (staging / "copy").rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        elif stat.S_ISREG(mode):
            # Copied beside the target, then renamed over it: a rename replaces whatever is at the target (a link
            # kept from an earlier delivery included) and never writes through it.
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            os.close(handle)
            try:
                shutil.copy2(entry, temporary)
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        else:
            return f"{entry.name}: not a regular file, not kept"
    except (OSError, shutil.Error) as exc:
        return f"{entry.name}: not kept: {exc}"
    return None


def file_problems(spec: ModelSpec, landed: PartitionFiles) -> list[str]:
    """File-level contract violations: what the landing boundary refused (links, folders, unreadable files), no
    data file, unsupported format, empty or oversized file."""
    if not landed.files and not landed.problems:
        return [f"partition folder {landed.directory} holds no data file"]
    problems = list(landed.problems)
    limit = int(spec.source.max_file_mb * 1024 * 1024)
    for file in landed.files:
        if not stat.S_ISREG(file.lstat().st_mode):
            continue  # named in landed.problems
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
        if fmt == "csv" and (ragged := ragged_csv_lines(file)):
            problems.extend(ragged)
            continue
        try:
            frame = (
                pd.read_parquet(file) if fmt == "parquet" else pd.read_csv(file, low_memory=False, dtype=text)
            )
        except Exception as exc:  # noqa: BLE001 - any parser error is a property of the received file
            problems.append(f"file {file.name}: cannot be read as {fmt}: {type(exc).__name__}: {exc}")
            continue
        frames.append(parse_timestamps(frame, timestamps, spec.contract.timezone))
    if problems:
        return None, problems
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], []


def ragged_csv_lines(file: Path, limit: int = 3) -> list[str]:
    """CSV read strictly: each line whose number of fields differs from the header's, naming the file and the
    line (at most ``limit`` of them, then how many more). pandas fills a short row with nulls and would load a row
    cut in the middle (a truncated delivery) as if it were whole. The standard library's C parser counts fields,
    quoted newlines and all; a file that is not text is left to the reader, which names it."""
    import csv

    problems: list[str] = []
    more = 0
    csv.field_size_limit(1 << 30)  # a long text field is no reason to skip the check (the default is 128 KiB)
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return []
            for row in reader:
                if len(row) != len(header) and row:
                    if len(problems) < limit:
                        problems.append(
                            f"file {file.name}, line {reader.line_num}: {len(row)} field(s), expected "
                            f"{len(header)} (the header's)"
                        )
                    else:
                        more += 1
    except UnicodeDecodeError:
        return []  # not UTF-8 text: the reader names it
    except csv.Error as exc:
        return [f"file {file.name}, line {reader.line_num}: not valid CSV: {exc}"]
    if more:
        problems.append(f"file {file.name}: {more} more line(s) with the wrong number of fields")
    return problems


def parse_timestamps(frame: pd.DataFrame, columns: list[str], zone: str = "UTC") -> pd.DataFrame:
    """``columns`` as instants in UTC: text (CSV has no timestamp type, SQLite returns timestamps as text) is
    parsed, a value carrying an offset keeps its instant, and a value without one is read in ``zone`` (the
    contract's ``timezone``); datetime columns are converted the same way. A column that does not parse (or a
    local time that does not exist or is ambiguous in ``zone``) is left as it came, so the type check names it."""

    for column in columns:
        if column not in frame.columns:
            continue
        try:
            frame[column] = _as_utc(frame[column], zone)
        except Exception:  # noqa: BLE001 - a column that cannot be read as instants is left for the type check
            pass
    return frame


def _as_utc(values: pd.Series, zone: str) -> pd.Series:
    import warnings

    import pandas as pd

    if values.dtype == object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pandas 2 warns of mixed offsets; checked below
            parsed = pd.to_datetime(values, format="ISO8601")
        if (
            parsed.dtype == object
        ):  # offsets that differ from row to row: each must carry one, and keeps its instant
            if not all(getattr(v, "tzinfo", None) is not None for v in parsed.dropna()):
                return values
            parsed = pd.to_datetime(values, format="ISO8601", utc=True)
        values = parsed
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        try:
            return values.dt.tz_localize(zone, ambiguous="raise", nonexistent="raise").dt.tz_convert("UTC")
        except Exception:  # noqa: BLE001 - a local time the zone cannot place: the naive values tell validation
            return values
    return values


def land_frame(
    frame: pd.DataFrame,
    landing: Path,
    partition: str,
    name: str,
    fmt: str = "parquet",
    marker: str | None = "_SUCCESS",
) -> Path:
    """Deliver ``frame`` as a partition's only file (``<name>.<fmt>``), with the completion ``marker`` written
    after it, atomically: written in a hidden folder beside the partition's, which then replaces it, so a reader
    never sees half a delivery."""
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
        if marker is not None:
            (staging / marker).touch()
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def is_landed(landing: Path, partition: str, marker: str | None = None) -> bool:
    """Whether a partition is there to validate. With a completion ``marker`` (the source's
    ``completion_marker``), once the marker is in its folder: the writer says the partition is whole. Without,
    once the folder holds at least one entry (hidden and ``_`` names aside): a data file, or anything else that was
    delivered, which validation then quarantines (a link, a folder) rather than waiting for it. A partition folder
    that is itself a link counts as landed too, for the same reason."""
    directory = partition_dir(landing, partition)
    if directory.is_symlink():
        return True
    if marker is not None:
        return os.path.lexists(directory / marker)
    try:
        return any(not p.name.startswith((".", "_")) for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        return True  # there, but unreadable: validation quarantines it with the reason
