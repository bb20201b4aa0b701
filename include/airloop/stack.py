"""The local stack behind ``airloop up``: Airflow's four components, the MLflow server and the alert catcher.

Airflow's components and MLflow are child processes, each in its own session (so a Ctrl-C in the terminal reaches
only ``airloop``, which then stops them and everything they started) with its output in
``{home}/logs/<component>.log``. The alert catcher runs in this process. The environment the components share,
and that ``airflow`` CLI calls need, comes from :func:`stack_env`; :attr:`Stack.env` adds the catcher's
connections.

Typical use (the CLI passes ``print`` as ``report``)::

    with Stack(load_settings(), report=print) as stack:
        for line in stack.banner():
            print(line)
        stack.wait()
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any

import psutil
import sqlalchemy as sa

from airloop.errors import AirloopError, ConfigError
from airloop.settings import Settings

if TYPE_CHECKING:
    from airloop.catcher import AlertCatcher

#: Airflow's own defaults (8793, 8794) for the default API port 8080; a second stack needs an API port at least
#: two away from the first so that its log-server ports do not collide.
WORKER_LOG_PORT_OFFSET = 713
TRIGGER_LOG_PORT_OFFSET = 714

#: The sender of demo alert e-mails sent to the catcher.
CATCHER_FROM_EMAIL = "airloop@localhost"

_LOG_TAIL_LINES = 30
_PASSWORD_PREFIX = "AIRLOOP_PASSWORD_"


class StackError(AirloopError):
    """A component of the local stack did not start, did not become healthy, or died."""


def stack_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every stack component and of ``airflow`` CLI calls against the stack.

    ``base`` (default: ``os.environ``) is kept. What airloop's settings define is always set from them (change it
    through ``AIRLOOP_*``): AIRFLOW_HOME, dags and plugins folders, ports and URLs, parallelism, users and the
    passwords file, every ``AIRLOOP_*`` setting as an absolute value, and ``MLFLOW_TRACKING_URI``. Everything else
    is a default that an ``AIRFLOW__SECTION__KEY`` variable in ``base`` overrides: the metadata DB (SQLite under
    ``{home}/airflow`` unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` is set), executor, secrets and tuning.

    The first call for a home creates ``{home}/airflow-secrets.json`` (mode 0600) with the JWT secret, API secret
    key and Fernet key that all components must share; their values are never reported.
    """
    env = dict(os.environ if base is None else base)
    airflow_home = settings.home / "airflow"
    port = settings.airflow_port
    base_url = f"http://127.0.0.1:{port}"

    defaults = {
        # LocalExecutor, with airloop's heavy imports done once in the scheduler before it forks task processes.
        "AIRFLOW__CORE__EXECUTOR": "airloop.airflow.executor.WarmLocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        # The simple auth manager is for a local stack: not reachable from other machines unless asked for.
        "AIRFLOW__API__HOST": "127.0.0.1",
        # New DAG files (a new model's DAGs) appear within 30 s instead of the default 5 min; listing one local
        # folder costs nothing. Existing files are re-parsed every min_file_process_interval (default 30 s),
        # which is kept: a spec edit shows up within half a minute and a parse of the thin DAG files is cheap.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # MLflow's job runner (huey consumers for GenAI scorers and trace jobs, unused by airloop) doubles the
        # server's start-up: measured 10-24 s to /health with it, 5.5 s without, on 2 cores.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # No phoning home from task processes (GX, MLflow) on a local stack.
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # OpenMP threads per task process (scikit-learn's gradient boosting): the cores shared by the task slots.
        # More threads than free cores spin-wait against each other: scoring a week (6,500 rows, 200 trees) took
        # 2.4 s of prediction with 2 threads beside other tasks on 2 cores, under 0.1 s with 1.
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // settings.parallelism)),
    }
    if any(key not in env for key in _SECRET_KEYS):
        stored = _shared_secrets(settings.home)
        defaults.update({key: stored[name] for key, name in _SECRET_KEYS.items()})
    for key, value in defaults.items():
        env.setdefault(key, value)

    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.root / "plugins"),
            # LocalExecutor pre-forks this many workers (default 32, ~1.6 GB).
            "AIRFLOW__CORE__PARALLELISM": str(settings.parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{u}:{r}" for u, r in airflow_users(settings)
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_log_port(port, WORKER_LOG_PORT_OFFSET)),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_log_port(port, TRIGGER_LOG_PORT_OFFSET)),
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            # The venv's bin first: components and task subprocesses start `airflow`, `mlflow` by bare name.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)]),
        }
    )
    # The passwords are in the passwords file; no component or task needs them in its environment.
    for key in [key for key in env if key.startswith(_PASSWORD_PREFIX)]:
        del env[key]
    # Task processes load settings again; absolute values make them see exactly these.
    for item in fields(Settings):
        env[f"AIRLOOP_{item.name.upper()}"] = str(getattr(settings, item.name))
    return env


def airflow_users(settings: Settings) -> list[tuple[str, str]]:
    """The Airflow users as ``(user, role)`` pairs, from ``airflow_users`` ("user:role,...")."""
    users = []
    for item in settings.airflow_users.split(","):
        user, _, role = item.strip().partition(":")
        if not user or not role:
            raise ConfigError(
                f"setting 'airflow_users' must be 'user:role,...', got {settings.airflow_users!r}"
            )
        users.append((user, role))
    return users


def passwords_file(settings: Settings) -> Path:
    """The simple auth manager's passwords file (JSON ``{user: password}``, mode 0600)."""
    return settings.home / "passwords.json"


def password_variable(user: str) -> str:
    """The environment variable that sets ``user``'s password, e.g. ``AIRLOOP_PASSWORD_ADMIN``."""
    return _PASSWORD_PREFIX + re.sub(r"[^A-Z0-9]", "_", user.upper())


def write_passwords(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """Write the passwords file and return ``{user: password}``.

    A password comes from ``AIRLOOP_PASSWORD_<USER>`` when set, else from the file (generated once, then kept), so
    no random password is ever lost in a log and a restart never changes it.
    """
    path = passwords_file(settings)
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); delete it to generate new passwords") from exc
    passwords = {
        user: env.get(password_variable(user)) or stored.get(user) or secrets.token_urlsafe(12)
        for user, _role in airflow_users(settings)
    }
    _write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords


def alert_catcher_available() -> bool:
    """Whether the demo alert catcher (``airloop.catcher``) is installed."""
    return importlib.util.find_spec("airloop.catcher") is not None


@dataclass(frozen=True)
class _Component:
    name: str
    argv: list[str]
    #: Ports the component binds, with what each one is, checked free before anything starts.
    ports: dict[int, str]


@dataclass
class _Running:
    component: _Component
    process: subprocess.Popen[bytes]
    log: Path


class Stack:
    """The local stack: :meth:`start` it (or use ``with``), :meth:`wait` on it, :meth:`stop` it.

    ``base_env`` (default ``os.environ``) is passed to :func:`stack_env`. ``timeout`` bounds the start-up, from
    launching the first process to every component being healthy. Progress goes to ``report``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        report: Callable[[str], None] = lambda _line: None,
        base_env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
    ) -> None:
        self.settings = settings
        self.report = report
        self.timeout = timeout
        self._base_env = dict(os.environ if base_env is None else base_env)
        self.env: dict[str, str] = stack_env(settings, self._base_env)
        self.passwords: dict[str, str] = {}
        #: Alert connection ids pointed at the catcher (the others are defined by the environment).
        self.caught_connections: list[str] = []
        #: Seconds from launching the first process to every component being healthy.
        self.startup_seconds: float | None = None
        self._running: list[_Running] = []
        self._catcher: AlertCatcher | None = None
        self._lock: IO[str] | None = None
        self._previous_sigterm: Any = None

    @property
    def logs_dir(self) -> Path:
        """Where each component's output goes (``<component>.log``)."""
        return self.settings.home / "logs"

    @property
    def alerts_dir(self) -> Path:
        """Where the catcher stores the alerts it receives (``email/*.eml``, ``slack/*.json``)."""
        return self.settings.home / "alerts"

    @property
    def airflow_url(self) -> str:
        """The Airflow UI and REST API."""
        return self.env["AIRFLOW__API__BASE_URL"]

    @property
    def mlflow_url(self) -> str:
        """The MLflow UI and tracking server started by the stack."""
        return f"http://127.0.0.1:{self.settings.mlflow_port}"

    def pids(self) -> dict[str, int]:
        """The process id of each running component (each one leads its own process group)."""
        return {run.component.name: run.process.pid for run in self._running}

    def prepare(self) -> None:
        """Make the folders and the passwords file; safe to repeat."""
        s = self.settings
        for folder in (
            s.home / "airflow",
            self.logs_dir,
            s.landing_dir,
            s.quarantine_dir,
            s.reports_dir,
            s.mlflow_artifacts_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        mlflow_db = _sqlite_path(s.mlflow_backend_uri)
        if mlflow_db is not None:
            mlflow_db.parent.mkdir(parents=True, exist_ok=True)
        self.passwords = write_passwords(s, self._base_env)

    def start(self) -> None:
        """Prepare, migrate the metadata DB, start every component and wait until all are healthy.

        On any failure (or Ctrl-C) everything already started is stopped before the error propagates.
        """
        if self._running:
            raise StackError("the stack is already running")
        self._take_lock()
        self._catch_sigterm()
        urls = (self.settings.mlflow_backend_uri, self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        new_databases = [path for url in urls if (path := _sqlite_path(url)) and not path.exists()]
        try:
            self.prepare()
            components = self._components()
            self._check_ports(components)
            started = time.monotonic()
            if alert_catcher_available():
                self._start_catcher()
            mlflow, *airflow = components
            # MLflow does not need the metadata DB: it starts while the DB migrates.
            self._launch(mlflow)
            self._migrate(deadline=started + self.timeout)
            for component in airflow:
                self._launch(component)
            self._wait_healthy(deadline=started + self.timeout)
            self.startup_seconds = time.monotonic() - started
            self.report(f"stack healthy in {self.startup_seconds:.1f} s")
        except BaseException:
            self.stop()
            # SQLite migrations are not transactional: a first start cut short (Ctrl-C in its first seconds)
            # leaves half-made databases that fail the next start. They hold nothing yet, so they go.
            for path in new_databases:
                for leftover in (
                    path,
                    *(path.with_name(path.name + end) for end in ("-journal", "-wal", "-shm")),
                ):
                    leftover.unlink(missing_ok=True)
            raise

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until a component exits or ``timeout`` seconds pass.

        Returns ``None`` on timeout, else what stopped (the component, its exit code and the tail of its log),
        already reported. Ctrl-C and SIGTERM raise :class:`KeyboardInterrupt` here, which ``with`` turns into a
        clean :meth:`stop`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # components are checked at least once, also with timeout 0
            for run in self._running:
                if run.process.poll() is not None:
                    problem = self._describe_exit(run)
                    self.report(problem)
                    return problem
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))

    def stop(self, grace: float = 20.0) -> None:
        """Stop every component and everything it started; safe to repeat.

        Two rounds, each SIGTERM to every process group involved, then up to ``grace`` seconds to exit: first the
        scheduler, DAG processor and triggerer with the tasks they run (Airflow gives each task a process group
        of its own), while the API server and MLflow still answer them so they can record how they ended; then
        the API server and MLflow. What is left after that gets SIGKILL. A second Ctrl-C skips the waiting.
        """
        if self._running:
            hurry = threading.Event()
            previous = {
                signum: signal.signal(signum, lambda *_: hurry.set())
                for signum in (signal.SIGINT, signal.SIGTERM)
                if _in_main_thread()
            }
            try:
                began = time.monotonic()
                left: list[psutil.Process] = []
                for round_ in (
                    [run for run in self._running if run.component.name not in _SERVERS],
                    [run for run in self._running if run.component.name in _SERVERS],
                ):
                    self.report("stopping " + ", ".join(run.component.name for run in round_))
                    left += _terminate([run.process for run in round_], time.monotonic() + grace, hurry)
                if left:
                    self.report(f"killing what is still running: {'; '.join(_describe(p) for p in left)}")
                    for run in self._running:
                        _signal_group(run.process.pid, signal.SIGKILL)
                    for proc in left:
                        _kill(proc)
                for run in self._running:
                    run.process.wait()
                self.report(f"stack stopped in {time.monotonic() - began:.1f} s")
            finally:
                self._running.clear()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if self._catcher is not None:
            self._catcher.stop()
            self._catcher = None
            for conn_id in self.caught_connections:
                del self.env[f"AIRFLOW_CONN_{conn_id.upper()}"]
            self.caught_connections.clear()
        self._release_sigterm()
        self._release_lock()

    def banner(self) -> list[str]:
        """Lines for the terminal: URLs, login, where logs and alerts go.

        Passwords airloop generated are shown (a local demo; they are also in the 0600 passwords file). Passwords
        given through ``AIRLOOP_PASSWORD_<USER>`` are never echoed: they may be real secrets and logs are kept.
        """
        s = self.settings
        logins = []
        for user, role in airflow_users(s):
            variable = password_variable(user)
            if self._base_env.get(variable):
                logins.append(f"{user} ({role}, password from {variable})")
            else:
                logins.append(f"{user} / {self.passwords.get(user, '?')} ({role})")
        lines = [
            f"Airflow UI   {self.airflow_url}   metadata DB {_masked(self.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}",
            f"MLflow UI    {self.mlflow_url}",
            f"Login        {', '.join(logins)}; passwords in {passwords_file(s)}",
            f"Warehouse    {_masked(s.warehouse_url)}",
            f"Landing      {s.landing_dir}",
            f"Logs         {self.logs_dir}/<component>.log; task logs under {s.home / 'airflow' / 'logs'}",
        ]
        if self.caught_connections:
            lines.append(
                f"Alerts       connections {', '.join(self.caught_connections)} point at the local catcher; "
                f"messages land in {self.alerts_dir}"
            )
        lines.append("Stop         Ctrl-C")
        return lines

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _components(self) -> list[_Component]:
        s = self.settings
        env = self.env
        return [
            _Component(
                "mlflow",
                [
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    s.mlflow_backend_uri,
                    "--artifacts-destination",
                    str(s.mlflow_artifacts_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(s.mlflow_port),
                    # One worker process: the default four cost ~8 s of CPU to start on 2 cores, and the
                    # handful of concurrent requests a local stack makes are served by its thread pool.
                    "--workers",
                    "1",
                ],
                {s.mlflow_port: "MLflow server (mlflow_port)"},
            ),
            _Component(
                "api-server",
                ["airflow", "api-server", "--port", str(s.airflow_port)],
                {s.airflow_port: "Airflow API server (airflow_port)"},
            ),
            _Component(
                "scheduler",
                ["airflow", "scheduler"],
                {
                    int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]): (
                        f"Airflow worker log server (airflow_port + {WORKER_LOG_PORT_OFFSET})"
                    )
                },
            ),
            _Component("dag-processor", ["airflow", "dag-processor"], {}),
            _Component(
                "triggerer",
                ["airflow", "triggerer"],
                {
                    int(env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]): (
                        f"Airflow triggerer log server (airflow_port + {TRIGGER_LOG_PORT_OFFSET})"
                    )
                },
            ),
        ]

    def _start_catcher(self) -> None:
        """Start the alert catcher and point the specs' alert connections that the environment lacks at it."""
        from airloop.catcher import AlertCatcher
        from airloop.spec import load_specs

        # In this process (two server threads), not a child: its connection details come from the running
        # catcher itself, its ports are free ones it bound (no race), and it cannot outlive the stack.
        catcher = AlertCatcher(self.alerts_dir).start()
        self._catcher = catcher
        connections: dict[str, str] = {}
        for spec in load_specs(self.settings.models_dir):
            if spec.alerts.email is not None:
                connections[spec.alerts.email.conn_id] = catcher.smtp_connection(CATCHER_FROM_EMAIL)
            if spec.alerts.slack is not None:
                connections[spec.alerts.slack.conn_id] = catcher.slack_connection()
        for conn_id, value in sorted(connections.items()):
            variable = f"AIRFLOW_CONN_{conn_id.upper()}"
            if variable not in self.env:
                self.env[variable] = value
                self.caught_connections.append(conn_id)
        self.report(
            f"alert catcher: SMTP on 127.0.0.1:{catcher.smtp_port}, webhooks on 127.0.0.1:{catcher.http_port}"
        )

    def _check_ports(self, components: list[_Component]) -> None:
        for component in components:
            for port, what in component.ports.items():
                if not _port_free(port):
                    raise StackError(
                        f"port {port} for the {what} is already in use (another stack?); "
                        "set AIRLOOP_AIRFLOW_PORT / AIRLOOP_MLFLOW_PORT to free ports"
                    )

    def _launch(self, component: _Component) -> None:
        log = self.logs_dir / f"{component.name}.log"
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))  # keep the previous run's log for one more run
        argv = [_executable(component.argv[0], self.env), *component.argv[1:]]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env={**self.env, "PYTHONUNBUFFERED": "1"},  # a crash's last lines reach the log
                cwd=self.settings.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._running.append(_Running(component, process, log))
        self.report(f"started {component.name} (pid {process.pid}), log: {log}")

    def _migrate(self, deadline: float) -> None:
        """``airflow db migrate``, unless this Airflow version already migrated this very database.

        The check costs ~0.3 s; the command ~3.5 s of CPU, on the critical path of every start.
        """
        url = self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        marker = self.settings.home / "airflow" / "migrated.json"
        # A digest, not the URL: it may hold a password.
        stamp = {
            "airflow": importlib.metadata.version("apache-airflow"),
            "database": hashlib.sha256(url.encode()).hexdigest(),
        }
        if _read_json(marker) == stamp and _has_migrated_schema(url):
            self.report("metadata DB already migrated")
            return
        log = self.logs_dir / "migrate.log"
        began = time.monotonic()
        try:
            with log.open("wb") as out:
                result = subprocess.run(
                    [_executable("airflow", self.env), "db", "migrate"],
                    env=self.env,
                    cwd=self.settings.home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(1.0, deadline - time.monotonic()),
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise StackError(
                f"`airflow db migrate` did not finish within the {self.timeout:.0f} s start-up timeout; "
                f"last lines of {log}:\n{_tail(log)}"
            ) from None
        if result.returncode != 0:
            raise StackError(
                f"`airflow db migrate` failed (exit code {result.returncode}); "
                f"last lines of {log}:\n{_tail(log)}"
            )
        marker.write_text(json.dumps(stamp) + "\n")
        self.report(f"metadata DB migrated in {time.monotonic() - began:.1f} s")

    def _wait_healthy(self, deadline: float) -> None:
        checks: dict[str, Callable[[], str | None]] = {
            "mlflow": self._mlflow_problem,
            "airflow": self._airflow_problem,
        }
        while True:
            for run in self._running:
                if run.process.poll() is not None:
                    raise StackError(self._describe_exit(run))
            problems = {name: problem for name, check in checks.items() if (problem := check())}
            if not problems:
                return
            if time.monotonic() > deadline:
                name, problem = next(iter(problems.items()))
                component = problem.split(":", 1)[0] if name == "airflow" else name
                log = self.logs_dir / f"{component}.log"
                raise StackError(f"{problem} after {self.timeout:.0f} s; last lines of {log}:\n{_tail(log)}")
            for name in [n for n in checks if n not in problems]:
                del checks[name]  # healthy once is enough during start-up
            time.sleep(0.5)

    def _mlflow_problem(self) -> str | None:
        status, _body = _http_get(f"{self.mlflow_url}/health")
        return None if status == 200 else "mlflow: /health does not answer"

    def _airflow_problem(self) -> str | None:
        status, body = _http_get(f"{self.airflow_url}/api/v2/monitor/health")
        if status != 200:
            return "api-server: /api/v2/monitor/health does not answer"
        health = json.loads(body)
        for key, component in (
            ("metadatabase", "api-server"),
            ("scheduler", "scheduler"),
            ("dag_processor", "dag-processor"),
            ("triggerer", "triggerer"),
        ):
            status_of = (health.get(key) or {}).get("status")
            if status_of != "healthy":
                return f"{component}: reported {status_of or 'no status'} by /api/v2/monitor/health"
        return None

    def _describe_exit(self, run: _Running) -> str:
        return (
            f"{run.component.name} exited with code {run.process.returncode}; "
            f"last lines of {run.log}:\n{_tail(run.log)}"
        )

    def _take_lock(self) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        lock = (self.settings.home / "stack.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackError(f"another `airloop up` is running with home {self.settings.home}") from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the flock
            self._lock = None

    def _catch_sigterm(self) -> None:
        # SIGTERM would end this process at once and orphan the children: make it a Ctrl-C instead.
        if _in_main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


#: The components tasks talk to (Airflow's execution API, MLflow tracking): stopped after the others.
_SERVERS = {"api-server", "mlflow"}

_SECRET_KEYS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt_secret",
    "AIRFLOW__API__SECRET_KEY": "api_secret_key",
    "AIRFLOW__CORE__FERNET_KEY": "fernet_key",
}


def _shared_secrets(home: Path) -> dict[str, str]:
    path = home / "airflow-secrets.json"
    try:
        stored: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(32),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    missing = [name for name in wanted if name not in stored]
    if missing:
        stored.update({name: wanted[name]() for name in missing})
        home.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(stored, indent=2) + "\n")
    return stored


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only; never briefly world-readable, replaced atomically."""
    partial = path.with_name(f".{path.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(partial, 0o600)  # O_CREAT's mode does not apply to a leftover file
    partial.replace(path)


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other databases)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _has_migrated_schema(url: str) -> bool:
    """Whether the database still holds a migrated schema (it may have been dropped and made again)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).first() is not None
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _log_port(port: int, offset: int) -> int:
    if port + offset > 65535:
        raise ConfigError(f"airflow_port {port} is too high: its log servers use airflow_port + {offset}")
    return port + offset


def _executable(name: str, env: Mapping[str, str]) -> str:
    if os.path.isabs(name):
        return name
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise StackError(f"`{name}` not found on PATH; install airloop's dependencies in this environment")
    return found


def isolated_env(home: Path, root: Path, **overrides: str) -> dict[str, str]:
    """The base environment of a stack of its own (tests, benchmarks): this process's, minus any Airflow and
    airloop settings (``AIRFLOW__*`` variables would override the stack's defaults), on free ports, with a
    generated admin password; ``overrides`` last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AIRLOOP_"))}
    env.update(
        AIRLOOP_ROOT=str(root),
        AIRLOOP_HOME=str(home),
        AIRLOOP_AIRFLOW_PORT=str(free_airflow_port()),
        AIRLOOP_MLFLOW_PORT=str(free_port()),
        AIRLOOP_PASSWORD_ADMIN=secrets.token_urlsafe(12),
    )
    env.update(overrides)
    return env


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for tests and benchmarks that start stacks side by side)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_airflow_port() -> int:
    """A free port for the Airflow API whose derived log-server ports are free too."""
    for _ in range(50):
        port = free_port()
        derived = [port + WORKER_LOG_PORT_OFFSET, port + TRIGGER_LOG_PORT_OFFSET]
        if max(derived) <= 65535 and all(_port_free(p) for p in derived):
            return port
    raise StackError("no free port block for the Airflow API and its log servers")


def _port_free(port: int) -> bool:
    with closing(socket.socket()) as sock:
        # As servers bind: SO_REUSEADDR ignores TIME_WAIT leftovers but not a listener on any address.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # refused, reset, timed out: not answering yet
        return 0, b""


def _tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _masked(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _terminate(
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
        _signal_group(group, signal.SIGTERM)
    while time.monotonic() < deadline and not hurry.is_set() and _alive(tree):
        for process in processes:
            process.poll()  # reap the components as they exit
        time.sleep(0.1)
    return _alive(tree)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:80]}"
    except psutil.Error:
        return str(proc.pid)


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
