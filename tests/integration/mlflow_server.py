"""A real MLflow tracking server for tests: ``mlflow server`` in a subprocess on a free port.

Typical use (pytest fixtures wrap it)::

    with MlflowServer(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts", tmp_path / "mlflow.log") as server:
        ...  # server.url answers; AIRLOOP_MLFLOW_TRACKING_URI=server.url points airloop at it

``postgres_database`` gives a PostgreSQL database created for the test and dropped after it, for the backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from airloop.local.env import free_port


class MlflowServer:
    """``mlflow server`` with the given backend store and artifacts folder, on a free port of 127.0.0.1."""

    def __init__(self, backend_uri: str, artifacts_dir: Path, log_file: Path, *, timeout: float = 90) -> None:
        self.backend_uri = backend_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.log_file = Path(log_file)
        self.timeout = timeout
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # The GenAI job runner is unused here and doubles the start-up time on 2 cores.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        argv = [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        with self.log_file.open("wb") as log:
            # Its own session: stop() signals the server and the workers it forks, nothing else.
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_healthy()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {self.timeout:.0f} s:\n{self._tail()}")

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A PostgreSQL database created for the caller and dropped (connections forced out) after it."""
    import sqlalchemy as sa

    name = f"airloop_mlflow_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
