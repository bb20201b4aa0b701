"""A component's processes are found by its session, also after it died and its children were re-parented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from airloop.local.processes import descendants, session_members, terminate

pytestmark = pytest.mark.unit

# A session leader (as the stack starts each component) with two children: one in its group, one that makes a group
# of its own (as Airflow's task supervisors do with setpgid). It prints their pids, then waits.
_LEADER = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
grouped = subprocess.Popen([sys.executable, "-c", "import os, time; os.setpgid(0, 0); time.sleep(120)"])
print(child.pid, grouped.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def leader():
    process = subprocess.Popen(
        [sys.executable, "-c", _LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    children = [int(pid) for pid in process.stdout.readline().split()]
    yield process, children
    for proc in [*session_members(process.pid), *(_proc(pid) for pid in children)]:
        if proc is not None:
            proc.kill()
    process.kill()
    process.wait()


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_a_dead_leaders_orphans_are_still_its_session(leader):
    process, children = leader
    # The second child moves to a group of its own, and stays in the session.
    deadline = time.monotonic() + 10
    while os.getpgid(children[1]) != children[1]:
        assert time.monotonic() < deadline, "the child did not make its own process group"
        time.sleep(0.05)
    assert {p.pid for p in descendants(process.pid)} == {process.pid, *children}

    process.send_signal(signal.SIGKILL)
    process.wait()
    # Re-parented: no longer children of anything we know, still members of the session.
    assert {p.pid for p in session_members(process.pid)} == set(children)
    assert {p.pid for p in descendants(process.pid)} == set(children)


def test_terminate_ends_the_whole_session_of_a_dead_leader(leader):
    process, children = leader
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = terminate([process], time.monotonic() + 10, threading.Event())
    assert left == []
    assert all(_proc(pid) is None or _proc(pid).status() == psutil.STATUS_ZOMBIE for pid in children)
