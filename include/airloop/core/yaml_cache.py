"""YAML read once per content: what a YAML file holds, kept as JSON under the SHA-256 of its bytes.

Every DAG file reads every spec at every parse (each a new process), and building the Python objects of a parsed
document is PyYAML's Python code even with libyaml's parser: about 1.5 ms per spec, a third of a DAG file's parse
at 35 models. A spec that has not changed since it was last read is decoded from JSON instead (C code, about
0.05 ms). The cache holds the document as YAML gives it (mappings, lists, strings, numbers, booleans, nulls, dates
and timestamps), not the validated spec: every read still validates against the code that runs, so an upgrade of
airloop never meets a stale verdict; the key includes PyYAML's version, the one thing that could read the same
bytes differently.

An entry is written only when it decodes back to exactly what YAML gave (same values, same types); a document
holding anything else (a set, bytes, a non-string key, a key starting with ``$``) is simply never cached. Entries
are written to a temporary file and renamed, so a concurrent reader sees a whole entry or none; a cache folder that
cannot be read or written (a read-only deployment) costs the parse and nothing else. Entries of edited specs stay
until the folder is cleared (each a few KB).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from airloop.core.files import atomic_path

#: The safe loader, libyaml's where PyYAML was built with it.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SALT = f"airloop yaml cache 1; PyYAML {yaml.__version__}\n".encode()
_DATE, _DATETIME = "$date", "$datetime"


def load_yaml(data: bytes, cache_dir: Path | None) -> Any:
    """The document in ``data`` (a safe load); from ``cache_dir`` when these bytes were read before.

    Raises what ``yaml.load`` raises for a document that is not valid YAML (never cached).
    """
    if cache_dir is None:
        return yaml.load(data, Loader=LOADER)  # noqa: S506 - a safe loader
    entry = cache_dir / f"{hashlib.sha256(_SALT + data).hexdigest()}.json"
    try:
        return json.loads(entry.read_bytes(), object_hook=_decode_scalar)
    except (OSError, ValueError):
        pass  # no entry yet, or one that does not decode: parse, and write it again
    document = yaml.load(data, Loader=LOADER)  # noqa: S506 - a safe loader
    _store(entry, document)
    return document


def _store(entry: Path, document: Any) -> None:
    try:
        text = json.dumps(document, default=_encode_scalar, allow_nan=True, check_circular=True)
        same = _same(json.loads(text, object_hook=_decode_scalar), document)
    except (TypeError, ValueError):
        return  # something JSON cannot hold
    if not same:
        return
    try:
        with atomic_path(entry) as partial:
            partial.write_text(text)
    except OSError:
        return


def _encode_scalar(value: Any) -> dict[str, str]:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    raise TypeError(type(value).__name__)


def _decode_scalar(mapping: dict[str, Any]) -> Any:
    """A date or timestamp from its tag; any other mapping as it is (a bad tag value raises ValueError)."""
    if len(mapping) == 1:
        ((key, value),) = mapping.items()
        if key in (_DATETIME, _DATE) and isinstance(value, str):
            return datetime.fromisoformat(value) if key == _DATETIME else date.fromisoformat(value)
    return mapping


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down, with no mapping key starting with ``$``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (
            a.keys() == b.keys()
            and all(isinstance(k, str) and not k.startswith("$") for k in a)
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:  # NaN
        return b != b
    return bool(a == b)
