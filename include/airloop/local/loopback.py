"""The host name Airflow records for this machine's task runs and triggerer on the local stack (the
``[core] hostname_callable`` setting): loopback, where the stack's log server listens."""

from __future__ import annotations


def hostname() -> str:
    """``127.0.0.1``: the API server fetches a running task's log from ``<hostname>:<log server port>``."""
    return "127.0.0.1"
