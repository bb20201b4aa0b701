"""A delivery's manifest (``source.manifest``): the writer's own list of the partition's data files, each with its
rows and SHA-256, checked against what was received.

The format is JSON, ``{"files": [{"name": "flights.parquet", "rows": 812, "sha256": "<64 hex digits>"}, ...]}``;
a part file of a folder read as one file (``source.part_folders``) is named ``folder/part``. Other keys (the
writer's name, a timestamp) are allowed and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The manifest's shape, quoted in its errors.
FORMAT = '{"files": [{"name": "<file>", "rows": <count>, "sha256": "<64 hex digits>"}, ...]}'
#: Files named per problem before "and N more".
NAMED = 5


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    files: list[_Entry] = Field(min_length=1)


@dataclass(frozen=True)
class Manifest:
    """What a manifest says: each data file's rows and SHA-256 (lower case), by its name."""

    name: str
    rows: Mapping[str, int]
    sha256: Mapping[str, str]


def read_manifest(path: Path) -> tuple[Manifest | None, list[str]]:
    """The manifest at ``path``, or the problems that make it unusable (each naming the file and the field)."""
    label = f"manifest {path.name}"
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        return None, [f"{label}: cannot be read: {exc.strerror or exc}"]
    except ValueError as exc:  # not UTF-8 or not JSON
        return None, [f"{label}: not valid JSON ({exc}); expected {FORMAT}"]
    try:
        parsed = _Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{label}: field {'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()[:NAMED]
        ]
        return None, [*problems[:-1], f"{problems[-1]}; expected {FORMAT}"]
    names = [entry.name for entry in parsed.files]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        return None, [f"{label}: lists {_named(doubled)} more than once"]
    return (
        Manifest(
            name=path.name,
            rows={entry.name: entry.rows for entry in parsed.files},
            sha256={entry.name: entry.sha256.lower() for entry in parsed.files},
        ),
        [],
    )


def delivery_problems(manifest: Manifest, received: Mapping[str, str]) -> list[str]:
    """How the received data files (``{name: SHA-256}``) disagree with ``manifest``: files it lists that were not
    received, files received that it does not list, and files whose bytes differ from the writer's."""
    label = f"manifest {manifest.name}"
    problems = []
    missing = sorted(set(manifest.sha256) - set(received))
    if missing:
        problems.append(f"{label} lists {_named(missing)}, not delivered")
    extra = sorted(set(received) - set(manifest.sha256))
    if extra:
        problems.append(f"{_named(extra, 'file')} delivered but not listed in {label}")
    for name in sorted(set(received) & set(manifest.sha256)):
        if received[name] != manifest.sha256[name]:
            problems.append(
                f"file {name}: SHA-256 {received[name][:16]}... differs from {label}'s "
                f"{manifest.sha256[name][:16]}... (changed or cut after the manifest was written)"
            )
    return problems


def row_problem(manifest: Manifest, name: str, rows: int) -> str | None:
    """Why ``rows`` read from file ``name`` disagree with the manifest, or None."""
    expected = manifest.rows.get(name)
    if expected is None or expected == rows:
        return None
    return f"file {name}: {rows} row(s) read, manifest {manifest.name} says {expected}"


def _named(names: list[str], noun: str = "") -> str:
    shown = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
    return f"{noun}{'s' if noun and len(names) > 1 else ''} {shown}".strip()
