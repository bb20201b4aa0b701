"""Reading a landed partition: ``<landing_dir>/<model>/date=YYYY-MM-DD/*.parquet|*.csv``.

File-level checks (format, size, readability, the writer's manifest) happen here, before Great Expectations sees
the rows; each problem names the file. The landing folder is a boundary: symbolic links are never followed (a link
to a file elsewhere, or to a system file, is reported, not read), and nested folders (unless the source reads
Spark-style part-file folders), special files (a FIFO would block a reader) and unreadable files are problems of the
delivery, quarantined with their reason, never a crash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.core.errors import SourceError
from airloop.core.files import atomic_path
from airloop.core.spec import LandingSourceSpec, ModelSpec
from airloop.ingest.manifest import Manifest, delivery_problems, read_manifest, row_problem

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
    #: The part files of each folder read as one data file (``source.part_folders``), by the folder's name.
    parts: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    #: The SHA-256 of each data file read, by its name (``folder/part`` for a part file).
    sha256: Mapping[str, str] = field(default_factory=dict)
    #: The manifest received with the partition (``source.manifest``), when the source declares one.
    manifest: Path | None = None

    def data_files(self) -> list[tuple[str, Path]]:
        """The files to read, each with its name in the partition: the regular entries, and the part files of
        the folders read as one, in name order."""
        files = []
        for entry in self.files:
            if entry.name in self.parts:
                files += [(f"{entry.name}/{part.name}", part) for part in self.parts[entry.name]]
            elif entry.name in self.sha256:
                files.append((entry.name, entry))
        return files


def partition_dir(landing: Path, partition: str) -> Path:
    """The folder a partition lands in."""
    return Path(landing) / f"date={partition}"


def find_delivery(spec: ModelSpec, landing: Path, partition: str) -> PartitionFiles:
    """:func:`find_partition` with what the model's source declares (part-file folders, a manifest)."""
    source = spec.source
    if isinstance(source, LandingSourceSpec):
        return find_partition(landing, partition, part_folders=source.part_folders, manifest=source.manifest)
    return find_partition(landing, partition)


def find_partition(
    landing: Path, partition: str, *, part_folders: bool = False, manifest: str | None = None
) -> PartitionFiles:
    """List a partition's entries (hidden ones aside) and fingerprint them, following no link.

    A regular file counts by its name and bytes; a link by its target's name (never its content), a folder by the
    names, sizes and times of what it holds (with ``part_folders``, by its part files' names and bytes), an
    unreadable file by its size and time, the ``manifest`` (when received) by its bytes: the fingerprint still
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
    problems: list[str] = []
    parts: dict[str, tuple[Path, ...]] = {}
    sha256: dict[str, str] = {}
    for entry in entries:
        digest.update(entry.name.encode() + b"\0")
        try:
            mode = entry.lstat().st_mode
        except OSError as exc:  # gone since the listing, or a folder without search permission
            digest.update(f"unstatable\0{exc.errno}".encode())
            problems.append(f"{entry.name}: cannot be examined: {exc.strerror or exc}")
            continue
        if stat.S_ISLNK(mode):
            target = os.readlink(entry)
            digest.update(b"link\0" + os.fsencode(target))
            problems.append(f"{entry.name}: a symbolic link (to {target}); links are not followed")
        elif stat.S_ISDIR(mode) and part_folders:
            found, folder_problems = _part_files(entry)
            problems += folder_problems
            parts[entry.name] = found
            for part in found:
                name = f"{entry.name}/{part.name}"
                digest.update(b"part\0" + name.encode() + b"\0")
                size, problem = _hash_file(part, name, digest, sha256)
                total += size
                problems += [problem] if problem else []
            if folder_problems:
                digest.update(b"folder\0" + _listing(entry))
        elif stat.S_ISDIR(mode):
            digest.update(b"folder\0" + _listing(entry))
            problems.append(f"{entry.name}: a folder; files in nested folders are not read")
        elif not stat.S_ISREG(mode):
            digest.update(b"special\0")
            problems.append(f"{entry.name}: not a regular file")
        else:
            size, problem = _hash_file(entry, entry.name, digest, sha256)
            total += size
            problems += [problem] if problem else []
    received_manifest = None
    if manifest is not None and os.path.lexists(directory / manifest):
        received_manifest = directory / manifest
        if not stat.S_ISREG(received_manifest.lstat().st_mode):
            digest.update(b"manifest-not-a-file\0")
            problems.append(f"manifest {manifest}: not a regular file; links are not followed")
        else:
            digest.update(b"manifest\0")
            _size, problem = _hash_file(received_manifest, manifest, digest, {})
            problems += [problem] if problem else []
    return PartitionFiles(
        partition,
        directory,
        entries,
        digest.hexdigest(),
        total,
        tuple(problems),
        parts=parts,
        sha256=sha256,
        manifest=received_manifest,
    )


def _part_files(folder: Path) -> tuple[tuple[Path, ...], list[str]]:
    """The part files of a folder read as one file (hidden and ``_`` names aside: Spark's ``.crc`` checksums
    and ``_SUCCESS``), and what in it is not a part file (a link, a folder, a special file)."""
    try:
        names = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))
    except OSError as exc:
        return (), [f"{folder.name}: a part-file folder that cannot be listed: {exc.strerror or exc}"]
    found, problems = [], []
    for path in names:
        try:
            mode = path.lstat().st_mode
        except OSError as exc:  # a folder without search permission lists its names only
            problems.append(f"{folder.name}/{path.name}: cannot be examined: {exc.strerror or exc}")
            continue
        if stat.S_ISREG(mode):
            found.append(path)
        else:
            kind = (
                "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "special"
            )
            problems.append(f"{folder.name}/{path.name}: {kind}; a part-file folder holds part files only")
    if not found and not problems:
        problems.append(f"{folder.name}: a part-file folder with no part file")
    return tuple(found), problems


def _hash_file(
    path: Path, name: str, digest: hashlib._Hash, sha256: dict[str, str]
) -> tuple[int, str | None]:
    """Feed ``path``'s bytes to ``digest`` and record its own SHA-256 under ``name``; its size, or the problem
    that it cannot be read (its size and time then go to the digest)."""
    own = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                own.update(chunk)
                size += len(chunk)
    except OSError as exc:
        info = path.lstat()
        digest.update(f"unreadable\0{info.st_size}\0{info.st_mtime_ns}".encode())
        return 0, f"file {name}: cannot be read: {exc.strerror or exc}"
    sha256[name] = own.hexdigest()
    return size, None


def _listing(folder: Path) -> bytes:
    """What a folder holds, as names, kinds, sizes and times, recursively, following no link."""
    lines = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names) + dirs:
            where = os.path.relpath(os.path.join(root, name), folder)
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError as exc:  # a folder without search permission: its names, not their details
                lines.append(f"{where}\0unstatable\0{exc.errno}")
                continue
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
            with atomic_path(target) as partial:
                shutil.copy2(entry, partial)
        else:
            return f"{entry.name}: not a regular file, not kept"
    except (OSError, shutil.Error) as exc:
        return f"{entry.name}: not kept: {exc}"
    return None


def file_problems(spec: ModelSpec, landed: PartitionFiles) -> list[str]:
    """File-level contract violations: what the landing boundary refused (links, folders, unreadable files), no
    data file, unsupported format, empty or oversized file, and a delivery that disagrees with its manifest."""
    if not landed.files and not landed.problems:
        return [f"partition folder {landed.directory} holds no data file"]
    problems = list(landed.problems)
    limit = int(spec.source.max_file_mb * 1024 * 1024)
    for name, file in landed.data_files():
        fmt = _SUFFIXES.get(file.suffix.lower())
        size = file.stat().st_size
        if fmt is None or fmt not in spec.source.formats:
            problems.append(
                f"file {name}: format {file.suffix or '(none)'} not accepted (expected {', '.join(spec.source.formats)})"
            )
        elif size == 0:
            problems.append(f"file {name}: empty (0 bytes)")
        elif size > limit:
            problems.append(f"file {name}: {size} bytes exceeds max_file_mb={spec.source.max_file_mb:g}")
    manifest, manifest_problems = _manifest(spec, landed)
    problems += manifest_problems
    if manifest is not None:
        problems += delivery_problems(manifest, landed.sha256)
    return problems


def _manifest(spec: ModelSpec, landed: PartitionFiles) -> tuple[Manifest | None, list[str]]:
    """The partition's manifest when its source declares one (None, and why, when it is missing or unusable)."""
    name = getattr(spec.source, "manifest", None)
    if name is None:
        return None, []
    if landed.manifest is None:
        return None, [f"manifest {name}: not delivered (the source declares one)"]
    if not stat.S_ISREG(landed.manifest.lstat().st_mode):
        return None, []  # named in landed.problems
    return read_manifest(landed.manifest)


def read_partition(spec: ModelSpec, landed: PartitionFiles) -> tuple[pd.DataFrame | None, list[str]]:
    """Read every data file of the partition into one frame; unreadable files are reported, not skipped, and so
    is a file whose rows differ from its manifest's count."""
    import pandas as pd

    frames, problems = [], []
    timestamps = [c.name for c in spec.contract.columns if c.type == "timestamp"]
    # CSV carries no types: a text column that happens to be all empty must not turn into floats.
    text = {c.name: str for c in spec.contract.columns if c.type == "string"}
    manifest, _problems = _manifest(spec, landed)
    first: tuple[str, list[str]] | None = None  # the first file read: its name and columns
    for name, file in landed.data_files():
        fmt = _SUFFIXES[file.suffix.lower()]
        if fmt == "csv" and (ragged := ragged_csv_lines(file, name=name)):
            problems.extend(ragged)
            continue
        try:
            frame = (
                pd.read_parquet(file) if fmt == "parquet" else pd.read_csv(file, low_memory=False, dtype=text)
            )
        except Exception as exc:  # noqa: BLE001 - any parser error is a property of the received file
            problems.append(_unreadable(name, fmt, exc))
            continue
        if manifest is not None and (wrong := row_problem(manifest, name, len(frame))):
            problems.append(wrong)
        if first is None:
            first = (name, list(frame.columns))
        elif (differ := _columns_differ(first, name, list(frame.columns))) is not None:
            problems.append(differ)
        frames.append(parse_timestamps(plain_values(frame), timestamps, spec.contract.timezone))
    if problems:
        return None, problems
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], []


@dataclass(frozen=True)
class ParquetChunks:
    """A delivery of Parquet files read a chunk of rows at a time, in delivery order (files in name order, rows in
    file order): each chunk a frame as :func:`read_partition` makes one, indexed by its rows' positions in the
    delivery. Iterating again reads the files again."""

    spec: ModelSpec
    landed: PartitionFiles
    rows: int
    chunk_rows: int

    def frames(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The chunks (of ``columns`` only, if given). A file that fails while read raises
        :class:`UnreadableChunk`, naming it."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        zone = self.spec.contract.timezone
        left = self._times_left_as_read
        wanted = set(columns) if columns is not None else None
        timestamps = [
            c.name
            for c in self.spec.contract.columns
            if c.type == "timestamp" and c.name not in left and (wanted is None or c.name in wanted)
        ]
        offset = 0
        for name, file in self.landed.data_files():
            try:
                parquet = pq.ParquetFile(file)
                schema = parquet.schema_arrow
                if columns is not None:
                    schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
                batches = parquet.iter_batches(batch_size=self.chunk_rows, columns=columns)
                while (batch := next(batches, None)) is not None:
                    # As pd.read_parquet reads a file: a table with the file's schema (its pandas metadata).
                    frame = pa.Table.from_batches([batch], schema=schema).to_pandas()
                    frame.index = pd.RangeIndex(offset, offset + len(frame))
                    offset += len(frame)
                    yield parse_timestamps(plain_values(frame), timestamps, zone)
            except Exception as exc:  # noqa: BLE001 - any reader error is a property of the received file
                raise UnreadableChunk(_unreadable(name, "parquet", exc)) from exc

    @cached_property
    def _times_left_as_read(self) -> set[str]:
        """The timestamp columns that :func:`read_partition` would leave as read (text that is no time, local times
        the zone cannot place): it parses each file's column whole, so each file's column is read alone and parsed
        whole here too (one column, not the file), and a column any file leaves as read stays as read in every
        chunk, for the type check to name. Columns the files hold as instants need no look. Looked at once per
        delivery, whatever the passes over it (validation, the key's second look, the load)."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = [c.name for c in self.spec.contract.columns if c.type == "timestamp"]
        left: set[str] = set()
        for name, file in self.landed.data_files():
            try:
                parquet = pq.ParquetFile(file)
                schema = parquet.schema_arrow
                columns = [
                    c
                    for c in wanted
                    if c not in left
                    and c in schema.names
                    and not (
                        pa.types.is_timestamp(schema.field(c).type) and schema.field(c).type.tz is not None
                    )
                ]
                if not columns:
                    continue
                frame = parquet.read(columns=columns).to_pandas()
            except Exception as exc:  # noqa: BLE001 - any reader error is a property of the received file
                raise UnreadableChunk(_unreadable(name, "parquet", exc)) from exc
            frame = parse_timestamps(plain_values(frame), columns, self.spec.contract.timezone)
            left |= {c for c in columns if not isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
        return left


class UnreadableChunk(SourceError):
    """A file of a delivery read in chunks failed part-way (the message names it)."""


def _unreadable(name: str, fmt: str, exc: Exception) -> str:
    """The problem of a data file its reader refused, naming the file and the reader's error."""
    return f"file {name}: cannot be read as {fmt}: {type(exc).__name__}: {exc}"


def parquet_chunks(
    spec: ModelSpec, landed: PartitionFiles, chunk_rows: int
) -> tuple[ParquetChunks | None, list[str]]:
    """The delivery as chunks of ``chunk_rows`` rows when every data file is Parquet and they hold more rows than
    that (``None`` otherwise: :func:`read_partition` reads it whole), with what its files' footers already tell:
    a file whose rows differ from its manifest's count, or whose columns differ from the first file's (the same
    problems :func:`read_partition` names). A file whose footer cannot be read is named at once, whatever the
    delivery's size (no chunks, no whole read)."""
    import pyarrow.parquet as pq

    files = landed.data_files()
    if not files or any(_SUFFIXES.get(file.suffix.lower()) != "parquet" for _name, file in files):
        return None, []
    footers = []
    try:
        for name, file in files:
            parquet = pq.ParquetFile(file)
            columns = list(parquet.schema_arrow.empty_table().to_pandas().columns)
            footers.append((name, parquet.metadata.num_rows, columns))
    except Exception as exc:  # noqa: BLE001 - any reader error is a property of the received file
        # Named at once: a whole read would load every other file before it reached this one.
        return None, [_unreadable(name, "parquet", exc)]
    rows = sum(count for _name, count, _columns in footers)
    if rows <= chunk_rows:
        return None, []
    manifest, _problems = _manifest(spec, landed)
    problems = []
    first = (footers[0][0], footers[0][2])
    for name, count, columns in footers:
        if manifest is not None and (wrong := row_problem(manifest, name, count)):
            problems.append(wrong)
        if (differ := _columns_differ(first, name, columns)) is not None:
            problems.append(differ)
    return ParquetChunks(spec, landed, rows, chunk_rows), problems


def _columns_differ(first: tuple[str, list[str]], name: str, columns: list[str]) -> str | None:
    """Why file ``name``'s columns differ from the first file's (files of one partition are concatenated, and a
    column one of them lacks would become nulls), or None."""
    first_name, expected = first
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if not missing and not extra:
        return None
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
        [f"adds {', '.join(extra)}"] if extra else []
    )
    return f"file {name}: columns differ from file {first_name}'s: {'; '.join(parts)}"


def plain_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Dictionary-encoded (categorical) columns as their values: a Parquet export written from pandas keeps a
    categorical column as such, and the encoding is a storage choice, not a type. Values are unchanged."""
    import pandas as pd

    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            try:
                frame[column] = values.astype(values.cat.categories.dtype)
            except (TypeError, ValueError):  # integer categories with nulls: no integer dtype holds them
                frame[column] = values.astype(object)
    return frame


def ragged_csv_lines(file: Path, limit: int = 3, name: str | None = None) -> list[str]:
    """CSV read strictly: each line whose number of fields differs from the header's, naming the file and the
    line (at most ``limit`` of them, then how many more). pandas fills a short row with nulls and would load a row
    cut in the middle (a truncated delivery) as if it were whole. The standard library's C parser counts fields,
    quoted newlines and all; a file that is not text is left to the reader, which names it. ``name``: the file's
    name in the partition (default its own)."""
    import csv

    name = name or file.name
    problems: list[str] = []
    more = 0
    csv.field_size_limit(1 << 30)  # a long text field is no reason to skip the check (the default is 128 KiB)
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return []
            doubled = sorted({column for column in header if header.count(column) > 1})
            if doubled:
                return [
                    f"file {name}, line 1: the header names column(s) {', '.join(map(repr, doubled))} twice"
                ]
            for row in reader:
                if len(row) != len(header) and row:
                    if len(problems) < limit:
                        problems.append(
                            f"file {name}, line {reader.line_num}: {len(row)} field(s), expected "
                            f"{len(header)} (the header's)"
                        )
                    else:
                        more += 1
    except UnicodeDecodeError:
        return []  # not UTF-8 text: the reader names it
    except csv.Error as exc:
        return [f"file {name}, line {reader.line_num}: not valid CSV: {exc}"]
    if more:
        problems.append(f"file {name}: {more} more line(s) with the wrong number of fields")
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


def is_landed(landing: Path, partition: str, marker: str | None = None, part_folders: bool = False) -> bool:
    """Whether a partition is there to validate. With a completion ``marker`` (the source's
    ``completion_marker``), once the marker is in its folder: the writer says the partition is whole; with
    ``part_folders``, also once every folder in it holds the marker (Spark writes ``_SUCCESS`` inside the folder it
    writes, ``flights.parquet/_SUCCESS``). Without a marker, once the folder holds at least one entry (hidden and
    ``_`` names aside): a data file, or anything else that was delivered, which validation then quarantines (a
    link, a folder) rather than waiting for it. A partition folder that is itself a link counts as landed too, for
    the same reason."""
    directory = partition_dir(landing, partition)
    if directory.is_symlink():
        return True
    try:
        if marker is not None:
            if os.path.lexists(directory / marker):
                return True
            if not part_folders:
                return False
            folders = [p for p in directory.iterdir() if not p.name.startswith((".", "_")) and _is_folder(p)]
            return bool(folders) and all(os.path.lexists(folder / marker) for folder in folders)
        return any(not p.name.startswith((".", "_")) for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        return True  # there, but unreadable: validation quarantines it with the reason


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False
