"""Small file helpers every stage uses: writes a reader never sees half-done, private files, advisory locks.

Readers in other processes (the UI, an alert's link, a task reading a cache) must see a file whole or not at all:
each write goes to a hidden sibling first and is renamed onto the target, which POSIX makes atomic.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden sibling of ``path`` to write to; renamed onto ``path`` when the block ends without error, and
    removed when it raises. Unique per call, so concurrent writers of one target never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (keys sorted; dates and other objects as ``str``) atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` readable by the owner only: never briefly world-readable, replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    return path


def read_json(path: Path) -> Any:
    """The JSON in ``path``; ``None`` when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


@contextmanager
def lock_if_free(path: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` if no other process holds it; yields whether it got it.

    The lock goes with the open file: a process that dies releases it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def lock_file(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path``, waiting for it; released when the block ends (or the process
    dies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
