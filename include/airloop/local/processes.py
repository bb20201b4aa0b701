"""The local stack's processes: starting a component in a session of its own, and stopping it with everything it
started."""

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
    """SIGTERM the process groups of ``processes`` and of all their descendants; those still alive at the end."""
    tree: list[psutil.Process] = []
    for process in processes:
        try:
            root = psutil.Process(process.pid)
            tree += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    groups = set()
    for proc in tree:
        try:
            groups.add(os.getpgid(proc.pid))
        except ProcessLookupError:
            continue
    groups.discard(os.getpgrp())  # never this process's own group (children start new sessions anyway)
    for group in groups:
        signal_group(group, signal.SIGTERM)
    while time.monotonic() < deadline and not hurry.is_set() and alive(tree):
        for process in processes:
            process.poll()  # reap the components as they exit
        time.sleep(0.1)
    return alive(tree)


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
