"""The local stack behind ``airloop up``: Airflow's four components and its log server, the MLflow server and the
alert catcher.

Airflow's components and MLflow are child processes, each in its own session (so a Ctrl-C in the terminal reaches
only ``airloop``, which then stops them and everything they started) with its output in
``{home}/logs/<component>.log``. Once the stack is healthy, a supervisor thread restarts a component that exits,
after stopping whatever it left running in its session (a dead scheduler's executor workers hold database sessions
and its log server's port); a component that keeps dying (:data:`MAX_RESTARTS` in :data:`RESTART_WINDOW` seconds)
stops the stack. The alert catcher runs in this process. The environment the components share,
and that ``airflow`` CLI calls need, comes from :func:`stack_env`; :attr:`Stack.env` adds the catcher's
connections.

Typical use (the CLI passes ``print`` as ``report``)::

    with Stack(load_settings(), report=print) as stack:
        for line in stack.banner():
            print(line)
        stack.wait()
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil
import sqlalchemy as sa

from airloop.core.settings import Settings
from airloop.local.catcher import AlertCatcher
from airloop.local.components import SERVERS, Component, celery_workers, stack_components
from airloop.local.env import (
    FAB_AUTH_MANAGER,
    airflow_users,
    component_env,
    password_variable,
    passwords_file,
    port_free,
    stack_env,
    write_mlflow_auth_config,
    write_passwords,
)
from airloop.local.health import (
    airflow_problem,
    celery_workers_problem,
    log_server_problem,
    migrate_metadata,
    mlflow_problem,
)
from airloop.local.mlflow_users import check_readers, sync_readers
from airloop.local.processes import (
    StackError,
    describe,
    executable,
    in_main_thread,
    interrupt_on_signal,
    kill,
    signal_group,
    tail,
    terminate,
)
from airloop.model.context import load_model_specs

#: The sender of demo alert e-mails sent to the catcher.
CATCHER_FROM_EMAIL = "airloop@localhost"
#: A component restarted this many times within :data:`RESTART_WINDOW` seconds is given up on: the stack stops.
MAX_RESTARTS = 5
RESTART_WINDOW = 600.0
#: Seconds what a dead component left running gets to end after SIGTERM, before SIGKILL.
LEFTOVER_GRACE = 5.0


@dataclass
class _Running:
    component: Component
    process: subprocess.Popen[bytes]
    log: Path
    #: When (monotonic) the component was restarted, most recent last.
    restarts: list[float] = field(default_factory=list)


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
        #: Guards ``_running`` between the supervisor thread and :meth:`stop`.
        self._guard = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Set with ``_gave_up`` (what stopped) when a component kept dying.
        self._given_up = threading.Event()
        self._gave_up: str | None = None

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

    @property
    def catcher(self) -> AlertCatcher | None:
        """The alert catcher the specs' undefined alert connections point at, while the stack runs."""
        return self._catcher

    def pids(self) -> dict[str, int]:
        """The process id of each running component (each one leads its own session and process group)."""
        with self._guard:
            return {run.component.name: run.process.pid for run in self._running}

    def restarts(self) -> dict[str, int]:
        """How often each component has been restarted in the last :data:`RESTART_WINDOW` seconds."""
        with self._guard:
            return {run.component.name: len(run.restarts) for run in self._running}

    def prepare(self) -> None:
        """Make the folders, the passwords file and MLflow's auth configuration; safe to repeat.

        The state folder is its owner's only (mode 0700): it holds quarantined data, reports, models and the
        files with secrets. Components run with umask 077, so what they and their tasks write is private too.
        """
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        s.home.chmod(0o700)
        for folder in (
            s.home / "airflow",
            self.logs_dir,
            s.landing_dir,
            s.quarantine_dir,
            s.reports_dir,
            s.mlflow_artifacts_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        for url in (s.mlflow_backend_uri, s.mlflow_auth_uri):
            if (database := _sqlite_path(url)) is not None:
                database.parent.mkdir(parents=True, exist_ok=True)
        self.passwords = write_passwords(s, self._base_env)
        check_readers(self.env["MLFLOW_TRACKING_USERNAME"], self.passwords)
        write_mlflow_auth_config(s)

    def start(self) -> None:
        """Prepare, migrate the metadata DB, start every component and wait until all are healthy.

        On any failure (or Ctrl-C) everything already started is stopped before the error propagates.
        """
        if self._running:
            raise StackError("the stack is already running")
        self._take_lock()
        self._catch_sigterm()
        urls = (
            self.settings.mlflow_backend_uri,
            self.settings.mlflow_auth_uri,
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        )
        new_databases = [path for url in urls if (path := _sqlite_path(url)) and not path.exists()]
        try:
            self.prepare()
            components = stack_components(self.settings, self.env)
            self._check_ports(components)
            started = time.monotonic()
            self._start_catcher()
            mlflow, *airflow = components
            # MLflow does not need the metadata DB: it starts while the DB migrates.
            self._launch(mlflow)
            self._migrate(deadline=started + self.timeout)
            users = self._start_user_sync()
            # The API server starts once the users are set up: both would make FAB's roles and permissions in an
            # empty metadata DB at once, and the API server dies of the duplicate (seen on SQLite).
            for component in [c for c in airflow if c.name != "api-server"]:
                self._launch(component)
            self._finish_user_sync(users, deadline=started + self.timeout)
            for component in [c for c in airflow if c.name == "api-server"]:
                self._launch(component)
            self._wait_healthy(deadline=started + self.timeout)
            created = sync_readers(
                self.mlflow_url,
                (self.env["MLFLOW_TRACKING_USERNAME"], self.env["MLFLOW_TRACKING_PASSWORD"]),
                self.passwords,
            )
            if created:
                self.report(f"MLflow read-only accounts created: {', '.join(created)}")
            self.startup_seconds = time.monotonic() - started
            self.report(f"stack healthy in {self.startup_seconds:.1f} s")
            self._stopping.clear()
            self._given_up.clear()
            self._supervisor = threading.Thread(
                target=self._supervise, name="airloop-supervisor", daemon=True
            )
            self._supervisor.start()
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
        """Block until the stack gives up on a component or ``timeout`` seconds pass.

        A component that exits is restarted by the supervisor thread, so this returns only when one kept dying
        (:data:`MAX_RESTARTS` in :data:`RESTART_WINDOW`): then it returns what stopped (the component, its exit
        code and the tail of its log), already reported. ``None`` on timeout. Ctrl-C and SIGTERM raise
        :class:`KeyboardInterrupt` here, which ``with`` turns into a clean :meth:`stop`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # checked at least once, also with timeout 0
            if self._given_up.is_set():
                return self._gave_up
            if deadline is not None and time.monotonic() >= deadline:
                return None
            # Short waits: a signal handler's KeyboardInterrupt is raised between them.
            self._given_up.wait(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))

    def stop(self, grace: float = 20.0) -> None:
        """Stop every component and everything it started; safe to repeat.

        Two rounds, each SIGTERM to every process group involved, then up to ``grace`` seconds to exit: first the
        scheduler, DAG processor and triggerer with the tasks they run (Airflow gives each task a process group
        of its own), while the API server and MLflow still answer them so they can record how they ended; then
        the API server and MLflow. What is left after that gets SIGKILL. A second Ctrl-C skips the waiting.
        """
        hurry = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: hurry.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
            if in_main_thread()
        }
        try:
            self._stopping.set()
            if self._supervisor is not None:
                # A restart under way ends first (it stops waiting once told to); nothing starts after this.
                self._supervisor.join(timeout=LEFTOVER_GRACE + 20)
                self._supervisor = None
            self._stop_components(grace, hurry)
        finally:
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

    def _stop_components(self, grace: float, hurry: threading.Event) -> None:
        with self._guard:
            running = list(self._running)
        if running:
            try:
                began = time.monotonic()
                left: list[psutil.Process] = []
                for round_ in (
                    [run for run in running if run.component.name not in SERVERS],
                    [run for run in running if run.component.name in SERVERS],
                ):
                    self.report("stopping " + ", ".join(run.component.name for run in round_))
                    left += terminate([run.process for run in round_], time.monotonic() + grace, hurry)
                if left:
                    self.report(f"killing what is still running: {'; '.join(describe(p) for p in left)}")
                    for run in running:
                        signal_group(run.process.pid, signal.SIGKILL)
                    for proc in left:
                        kill(proc)
                    # SIGKILL is not instant: wait until the kernel has taken them, so nothing outlives stop().
                    psutil.wait_procs(left, timeout=10)
                for run in running:
                    run.process.wait()
                self.report(f"stack stopped in {time.monotonic() - began:.1f} s")
            finally:
                with self._guard:
                    self._running.clear()

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
            f"MLflow UI    {self.mlflow_url}   (the same logins, read-only; tasks sign in as "
            f"{self.env['MLFLOW_TRACKING_USERNAME']})",
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

    def _start_catcher(self) -> None:
        """Start the alert catcher and point the specs' alert connections that the environment lacks at it."""
        # In this process (two server threads), not a child: its connection details come from the running
        # catcher itself, its ports are free ones it bound (no race), and it cannot outlive the stack.
        catcher = AlertCatcher(self.alerts_dir).start()
        self._catcher = catcher
        connections: dict[str, str] = {}
        for spec in load_model_specs(self.settings.models_dir).specs:
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

    def _check_ports(self, components: list[Component]) -> None:
        for component in components:
            for port, what in component.ports.items():
                if not port_free(port):
                    raise StackError(
                        f"port {port} for the {what} is already in use (another stack?); "
                        "set AIRLOOP_AIRFLOW_PORT / AIRLOOP_MLFLOW_PORT to free ports"
                    )

    def _launch(self, component: Component, restarts: list[float] | None = None) -> _Running:
        log = self.logs_dir / f"{component.name}.log"
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))  # keep the previous run's log for one more run
        process = self._spawn(component.name, component.argv, log, stdin=subprocess.DEVNULL)
        run = _Running(component, process, log, restarts=restarts or [])
        self._running.append(run)
        self.report(f"started {component.name} (pid {process.pid}), log: {log}")
        return run

    def _spawn(self, name: str, argv: list[str], log: Path, *, stdin: int) -> subprocess.Popen[bytes]:
        """``argv`` with ``name``'s environment (:func:`component_env`), in a session of its own, in the state folder
        with umask 077 (what it writes is its owner's only), its output in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [executable(argv[0], self.env), *argv[1:]],
                # Unbuffered: a crash's last lines reach the log.
                env={**component_env(name, self.env), "PYTHONUNBUFFERED": "1"},
                cwd=self.settings.home,
                umask=0o077,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _supervise(self) -> None:
        """Restart a component that exited, until :meth:`stop` or until one keeps dying."""
        while not self._stopping.wait(0.5):
            with self._guard:
                exited = [run for run in self._running if run.process.poll() is not None]
            for run in exited:
                problem = self._describe_exit(run)
                self.report(problem)
                now = time.monotonic()
                recent = [t for t in run.restarts if now - t < RESTART_WINDOW]
                if len(recent) >= MAX_RESTARTS:
                    self._give_up(
                        f"{problem}\n{run.component.name} exited {len(recent) + 1} times within "
                        f"{RESTART_WINDOW / 60:.0f} min: not restarted again, the stack stops"
                    )
                    return
                try:
                    self._restart(run, restarts=[*recent, now])
                except Exception as exc:  # noqa: BLE001 - any failure to restart stops the stack, never the thread alone
                    self._give_up(f"{problem}\n{run.component.name} could not be restarted: {exc}")
                    return

    def _give_up(self, why: str) -> None:
        self._gave_up = why
        self.report(why.rsplit("\n", 1)[-1])
        self._given_up.set()

    def _restart(self, run: _Running, restarts: list[float]) -> None:
        """Stop what the dead component left in its session (an executor's workers, a log server, tasks), wait
        for its ports, and start it again in place."""
        left = terminate([run.process], time.monotonic() + LEFTOVER_GRACE, self._stopping)
        if left:
            self.report(
                f"killing what {run.component.name} left running: {'; '.join(describe(p) for p in left)}"
            )
            for proc in left:
                kill(proc)
            psutil.wait_procs(left, timeout=10)
        deadline = time.monotonic() + 30
        while busy := [port for port in run.component.ports if not port_free(port)]:
            if self._stopping.is_set():
                return
            if time.monotonic() > deadline:
                raise StackError(f"port(s) {busy} still in use 30 s after {run.component.name} exited")
            time.sleep(0.2)
        with self._guard:
            if self._stopping.is_set():
                return
            restarted = self._launch(run.component, restarts=restarts)  # appended to the running components
            self._running.remove(run)
        self.report(
            f"restarted {run.component.name} (pid {restarted.process.pid}): restart {len(restarts)} "
            f"in the last {RESTART_WINDOW / 60:.0f} min"
        )

    def _migrate(self, deadline: float) -> None:
        took = migrate_metadata(self.env, self.settings.home, self.logs_dir / "migrate.log", deadline)
        self.report(
            "metadata DB already migrated" if took is None else f"metadata DB migrated in {took:.1f} s"
        )

    def _start_user_sync(self) -> subprocess.Popen[bytes] | None:
        """Start :mod:`airloop.airflow.users` (about 3 s, while the components start), the users and their
        passwords on its stdin; ``None`` under an auth manager other than FAB's (set by the environment), which
        manages its users itself."""
        if self.env["AIRFLOW__CORE__AUTH_MANAGER"] != FAB_AUTH_MANAGER:
            return None
        users = [
            {"username": user, "role": role, "password": self.passwords[user]}
            for user, role in airflow_users(self.settings)
        ]
        argv = ["python", "-m", "airloop.airflow.users"]
        process = self._spawn("users", argv, self.logs_dir / "users.log", stdin=subprocess.PIPE)
        assert process.stdin is not None
        process.stdin.write(json.dumps(users).encode())
        process.stdin.close()
        return process

    def _finish_user_sync(self, process: subprocess.Popen[bytes] | None, deadline: float) -> None:
        if process is None:
            return
        log = self.logs_dir / "users.log"
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
            raise StackError(
                f"the Airflow users were not set up in time; last lines of {log}:\n{tail(log)}"
            ) from None
        if code != 0:
            raise StackError(
                f"setting up the Airflow users failed (exit code {code}); last lines of {log}:\n{tail(log)}"
            )
        created = json.loads(log.read_text().strip().splitlines()[-1])
        if created:
            self.report(f"Airflow users created: {', '.join(created)}")

    def _wait_healthy(self, deadline: float) -> None:
        checks: dict[str, Callable[[], str | None]] = {
            "mlflow": lambda: mlflow_problem(self.mlflow_url),
            "airflow": lambda: airflow_problem(self.airflow_url),
            "log-server": lambda: log_server_problem(
                f"http://127.0.0.1:{self.env['AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT']}/"
            ),
        }
        if self.settings.executor == "celery":
            workers = celery_workers(self.settings)
            checks["celery"] = lambda: celery_workers_problem(self.env, workers)
        while True:
            for run in self._running:
                if run.process.poll() is not None:
                    raise StackError(self._describe_exit(run))
            problems = {name: problem for name, check in checks.items() if (problem := check())}
            if not problems:
                return
            if time.monotonic() > deadline:
                name, problem = next(iter(problems.items()))
                component = problem.split(":", 1)[0] if name in ("airflow", "celery") else name
                log = self.logs_dir / f"{component}.log"
                last = f"; last lines of {log}:\n{tail(log)}" if log.exists() else ""
                raise StackError(f"{problem} after {self.timeout:.0f} s{last}")
            for name in [n for n in checks if n not in problems]:
                del checks[name]  # healthy once is enough during start-up
            time.sleep(0.5)

    def _describe_exit(self, run: _Running) -> str:
        return (
            f"{run.component.name} exited with code {run.process.returncode}; "
            f"last lines of {run.log}:\n{tail(run.log)}"
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
        if in_main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt_on_signal)

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other databases)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _masked(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
