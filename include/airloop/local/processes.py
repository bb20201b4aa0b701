"""The local stack's processes: starting a component in a session of its own, and stopping it with everything it
started.

A component is started as the leader of a new session (``start_new_session``), so everything it starts stays in that
session (Airflow's task supervisors make process groups of their own with ``setpgid``, which keeps the session)
even when the component dies and its children are re-parented: :func:`session_members` finds them by the session
id, not by walking the children of a process that may be gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import psutil

from airloop.core.errors import AirloopError

_LOG_TAIL_LINES = 30


class StackError(AirloopError):
    """A component of the local stack did not start, did not become healthy, or died."""


def executable(name: str, env: Mapping[str, str]) -> str:
    if os.path.isabs(name):
        return name
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise StackError(f"`{name}` not found on PATH; install airloop's dependencies in this environment")
    return found


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # refused, reset, timed out: not answering yet
        return 0, b""


def tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def terminate(
    processes: list[subprocess.Popen[bytes]], deadline: float, hurry: threading.Event
) -> list[psutil.Process]:
    """SIGTERM the process groups of everything ``processes`` started (their sessions, and their descendants when
    they are alive); those still alive at the end."""
    tree = {
        proc.pid: proc
        for process in processes
        # A leader already reaped (poll() has its code) is no process to walk: its pid may be someone else's now.
        for proc in descendants(process.pid, walk=process.poll() is None)
    }.values()
    groups = set()
    for proc in tree:
        try:
            groups.add(os.getpgid(proc.pid))
        except ProcessLookupError:
            continue
    groups.discard(os.getpgrp())  # never this process's own group (children start new sessions anyway)
    for group in groups:
        signal_group(group, signal.SIGTERM)
    while time.monotonic() < deadline and not hurry.is_set() and alive(list(tree)):
        for process in processes:
            process.poll()  # reap the components as they exit
        time.sleep(0.1)
    return alive(list(tree))


def descendants(leader: int, walk: bool = True) -> list[psutil.Process]:
    """The session led by ``leader`` (alive or dead), and, with ``walk``, the descendants of process ``leader``
    (one that left the session with ``setsid`` is still found while its parents live)."""
    found = {proc.pid: proc for proc in session_members(leader)}
    if not walk:
        return list(found.values())
    try:
        root = psutil.Process(leader)
        for proc in [root, *root.children(recursive=True)]:
            found.setdefault(proc.pid, proc)
    except psutil.NoSuchProcess:
        pass
    return list(found.values())


def session_members(sid: int) -> list[psutil.Process]:
    """Every live process in session ``sid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                members.append(proc)
        except OSError:  # gone, or not ours to ask about
            continue
    return members


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:80]}"
    except psutil.Error:
        return str(proc.pid)


def kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def interrupt_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
