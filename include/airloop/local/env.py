"""The local stack's configuration: the environment every component shares, the Airflow users and their passwords,
the secrets the components must agree on, and free ports for stacks side by side."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import sys
from collections.abc import Mapping
from contextlib import closing
from dataclasses import fields
from pathlib import Path

from airloop.core.errors import ConfigError
from airloop.core.files import write_private
from airloop.core.settings import Settings
from airloop.local.processes import StackError

#: The log server's port is the API port plus this: Airflow's own default (8793) for the default API port 8080.
LOG_SERVER_PORT_OFFSET = 713

_PASSWORD_PREFIX = "AIRLOOP_PASSWORD_"
#: Airflow's auth manager on the stack (the FAB provider's): users, roles and permissions in the metadata DB.
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
#: The MLflow user airloop's tasks and commands sign in as, unless ``MLFLOW_TRACKING_USERNAME`` names another: the
#: MLflow server's admin, the one identity that may change registered models and move their aliases.
MLFLOW_SERVICE_USER = "airloop"
#: What only the MLflow server needs (its stores' URLs, its own secret key, its admin's login): kept out of the
#: other components' environment, and so out of every task's.
MLFLOW_SERVER_ONLY = (
    "MLFLOW_BACKEND_STORE_URI",
    "AIRLOOP_MLFLOW_BACKEND_URI",
    "AIRLOOP_MLFLOW_AUTH_URI",
    "MLFLOW_AUTH_CONFIG_PATH",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
)
#: How long the MLflow server trusts a login it has checked (its basic-auth app's cache; off by default).
MLFLOW_AUTH_CACHE_SECONDS = 60
#: How airloop's tasks and commands sign in to MLflow (the client reads these).
MLFLOW_LOGIN_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: Where Airflow takes ``sqlite3.connect``'s arguments for its metadata DB (sync and async engines).
SQLITE_CONNECT_ARGS_KEYS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC",
)
_SQLITE_CONNECT_ARGS = "airloop.local.sqlite_metadata.CONNECT_ARGS"
_API_SERVER_SQLITE_CONNECT_ARGS = "airloop.local.sqlite_metadata.API_SERVER_CONNECT_ARGS"


def stack_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every stack component and of ``airflow`` CLI calls against the stack.

    ``base`` (default: ``os.environ``) is kept. What airloop's settings define is always set from them (change it
    through ``AIRLOOP_*``): AIRFLOW_HOME, dags and plugins folders, ports and URLs, parallelism, users and the
    passwords file, every ``AIRLOOP_*`` setting as an absolute value, and ``MLFLOW_TRACKING_URI``. Everything else
    is a default that an ``AIRFLOW__SECTION__KEY`` variable in ``base`` overrides: the metadata DB (SQLite under
    ``{home}/airflow`` unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` is set), executor, secrets and tuning.

    The first call for a home creates ``{home}/airflow-secrets.json`` (mode 0600) with the JWT secret, API secret
    key and Fernet key that all components must share, the MLflow service user's password and the MLflow server's
    secret key; their values are never reported. Tasks sign in to MLflow as :data:`MLFLOW_SERVICE_USER`.
    """
    env = dict(os.environ if base is None else base)
    airflow_home = settings.home / "airflow"
    port = settings.airflow_port
    base_url = f"http://127.0.0.1:{port}"

    defaults = {
        # LocalExecutor, with airloop's heavy imports done once in the scheduler before it forks task processes.
        "AIRFLOW__CORE__EXECUTOR": "airloop.airflow.executor.WarmLocalExecutor",
        # Airflow's production auth manager: users and roles in the metadata DB (:mod:`airloop.airflow.users`).
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        # Every server on loopback unless configured otherwise (a deployment sets AIRFLOW__API__HOST).
        "AIRFLOW__API__HOST": "127.0.0.1",
        # New DAG files (a new model's DAGs) appear within 30 s instead of the default 5 min; listing one local
        # folder costs nothing. Existing files are re-parsed every min_file_process_interval (default 30 s),
        # which is kept: a spec edit shows up within half a minute and a parse of the thin DAG files is cheap.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # A scheduler that died (and was restarted by the stack's supervisor) leaves its queued and running tasks
        # to the new one, which resets them once the dead one's heartbeat is older than
        # scheduler_health_check_threshold (30 s): checked every 30 s here, not every 5 min, so the loop goes on
        # within a minute.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
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
        # The warehouse as an Airflow connection: what chained models' SQL sources name (source.conn_id).
        f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": warehouse_connection(settings.warehouse_url),
        # Tasks sign in to MLflow as the service user (its password: MLFLOW_TRACKING_PASSWORD, else generated).
        "MLFLOW_TRACKING_USERNAME": MLFLOW_SERVICE_USER,
    }
    if settings.executor == "celery":
        # The production topology: tasks go through the broker to the stack's Celery workers
        # (:func:`airloop.local.components.stack_components`); its URL, which may hold a password, through here.
        defaults["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
        defaults["AIRFLOW__CELERY__BROKER_URL"] = settings.celery_broker_url
        # Warm task processes that may start processes of their own (:mod:`airloop.airflow.celery_worker`).
        defaults["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = "airloop.airflow.celery_worker.CELERY_CONFIG"
        # Airflow's own default, said out loud (else every task logs a warning): a task a dead worker held is
        # failed by Airflow's heartbeat timeout and retried long before the broker would hand it out again.
        defaults["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"] = "86400"
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env:
        if settings.executor == "celery":
            raise ConfigError(
                "executor 'celery' needs a PostgreSQL metadata DB shared by the workers: set "
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (Airflow refuses Celery on SQLite)"
            )
        # The default SQLite metadata DB: wait for its write lock instead of failing after sqlite3's 5 s (the API
        # server excepted: :func:`component_env`).
        for key in SQLITE_CONNECT_ARGS_KEYS:
            defaults[key] = _SQLITE_CONNECT_ARGS
    # The secrets the environment does not give: generated once into the home's secrets file, then reused.
    needed = [name for key, name in _SECRET_KEYS.items() if key not in env]
    if needed:
        stored = _shared_secrets(settings.home, needed)
        defaults.update({key: stored[name] for key, name in _SECRET_KEYS.items() if name in needed})
    for key, value in defaults.items():
        env.setdefault(key, value)

    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.root / "plugins"),
            # LocalExecutor pre-forks this many workers (default 32, ~1.6 GB).
            "AIRFLOW__CORE__PARALLELISM": str(settings.parallelism),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            # One log server on loopback serves the running tasks' and the triggerer's logs (Airflow's own
            # binds every interface: :func:`airloop.local.components.stack_components`), reached by a loopback
            # host name recorded on each task instance and triggerer job.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_log_port(port)),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_log_port(port)),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airloop.local.loopback.hostname",
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            # The MLflow server's stores through its environment, not its command line (which `ps` shows to
            # every user): a PostgreSQL URL holds a password. :func:`component_env` gives them to MLflow only.
            "MLFLOW_BACKEND_STORE_URI": settings.mlflow_backend_uri,
            "MLFLOW_AUTH_CONFIG_PATH": str(mlflow_auth_config(settings)),
            # The venv's bin first: components and task subprocesses start `airflow`, `mlflow` by bare name.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)]),
        }
    )
    # The passwords are in the passwords file; no component or task needs them in its environment.
    for key in [key for key in env if key.startswith(_PASSWORD_PREFIX)]:
        del env[key]
    # Task processes load settings again; absolute values make them see exactly these (but MLflow's stores, which
    # :func:`component_env` keeps to the MLflow server: the others see the settings file's, and use neither).
    for item in fields(Settings):
        env[f"AIRLOOP_{item.name.upper()}"] = str(getattr(settings, item.name))
    return env


#: The connection id the local stack gives the warehouse, unless the environment defines it.
def component_env(component: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment ``component`` runs with: the stack's, except that

    - what only the MLflow server needs (:data:`MLFLOW_SERVER_ONLY`) reaches the MLflow server only, which makes
      the service user its admin on first start;
    - on the default SQLite metadata DB the API server gives up waiting for the write lock after 5 s, not 60
      (:mod:`airloop.local.sqlite_metadata` says why)."""
    own = dict(env)
    if component == "mlflow":
        own["MLFLOW_AUTH_ADMIN_USERNAME"] = own["MLFLOW_TRACKING_USERNAME"]
        own["MLFLOW_AUTH_ADMIN_PASSWORD"] = own["MLFLOW_TRACKING_PASSWORD"]
    else:
        for key in MLFLOW_SERVER_ONLY:
            own.pop(key, None)
    if component == "api-server":
        for key in SQLITE_CONNECT_ARGS_KEYS:
            if own.get(key) == _SQLITE_CONNECT_ARGS:
                own[key] = _API_SERVER_SQLITE_CONNECT_ARGS
    return own


WAREHOUSE_CONN_ID = "airloop_warehouse"


def warehouse_connection(url: str) -> str:
    """The warehouse's SQLAlchemy URL as an Airflow connection (JSON for ``AIRFLOW_CONN_<ID>``): SQLite or
    PostgreSQL, through their providers' hooks."""
    import json

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": parsed.database})
    if backend == "postgresql":
        fields_ = {
            "host": parsed.host,
            "port": parsed.port,
            "login": parsed.username,
            "schema": parsed.database,
        }
        if parsed.password:
            fields_["password"] = parsed.password
        if parsed.query:
            fields_["extra"] = dict(parsed.query)
        return json.dumps({"conn_type": "postgres", **{k: v for k, v in fields_.items() if v is not None}})
    raise ValueError(f"the warehouse is {backend}: only SQLite and PostgreSQL warehouses are supported")


#: The roles a stack's user may have (Airflow's FAB roles), by the names ``airflow_users`` accepts. A viewer reads
#: DAGs, runs, logs and reports; an operator (Op) also triggers, clears, approves and manages connections; a user
#: (User) edits DAG runs but not the stack's configuration; an admin also manages users and roles.
ROLES = {"viewer": "Viewer", "user": "User", "op": "Op", "operator": "Op", "admin": "Admin"}


def airflow_users(settings: Settings) -> list[tuple[str, str]]:
    """The Airflow users as ``(user, role)`` pairs, from ``airflow_users`` ("user:role,..."), each role one of
    Airflow's (:data:`ROLES`)."""
    users = []
    for item in settings.airflow_users.split(","):
        user, _, role = item.strip().partition(":")
        if not user or not role:
            raise ConfigError(
                f"setting 'airflow_users' must be 'user:role,...', got {settings.airflow_users!r}"
            )
        if role.lower() not in ROLES:
            raise ConfigError(
                f"setting 'airflow_users': user {user!r} has role {role!r}; roles are {', '.join(ROLES)}"
            )
        users.append((user, ROLES[role.lower()]))
    return users


def passwords_file(settings: Settings) -> Path:
    """The Airflow users' passwords (JSON ``{user: password}``, mode 0600), which people sign in to Airflow and
    MLflow with."""
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
    write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords


def mlflow_auth_config(settings: Settings) -> Path:
    """The MLflow server's basic-auth configuration (mode 0600: a PostgreSQL URL in it holds a password)."""
    return settings.home / "mlflow" / "auth.ini"


def write_mlflow_auth_config(settings: Settings) -> Path:
    """Write :func:`mlflow_auth_config`: every signed-in user may read everything (``READ``); changing a
    registered model or its aliases takes a permission only its creator (the service user) and admins hold. No
    admin password is written: the server takes it from its environment (:func:`component_env`)."""
    lines = [
        "[mlflow]",
        "default_permission = READ",
        # configparser's interpolation reads "%" as a reference: a URL-encoded password must keep its "%".
        f"database_uri = {settings.mlflow_auth_uri.replace('%', '%%')}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        # A login checked once is trusted for a minute: the password hash (PBKDF2) cost 0.24 s per request, every
        # MLflow call of every task; 0.010 s with the cache (measured). A password changed through the API takes
        # effect at once on the server's one worker.
        f"auth_cache_ttl_seconds = {MLFLOW_AUTH_CACHE_SECONDS}",
    ]
    return write_private(mlflow_auth_config(settings), "\n".join(lines) + "\n")


def mlflow_login(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """How a command signs in to the stack's MLflow: ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` from ``env`` when
    set, else the service user with the password the stack generated (read, never created, here); ``{}`` when
    there is none (no stack has run in this home)."""
    password = env.get("MLFLOW_TRACKING_PASSWORD") or _stored_secrets(settings.home).get(
        _SECRET_KEYS["MLFLOW_TRACKING_PASSWORD"]
    )
    if not password:
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": env.get("MLFLOW_TRACKING_USERNAME") or MLFLOW_SERVICE_USER,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


_SECRET_KEYS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt_secret",
    "AIRFLOW__API__SECRET_KEY": "api_secret_key",
    "AIRFLOW__CORE__FERNET_KEY": "fernet_key",
    "MLFLOW_TRACKING_PASSWORD": "mlflow_service_password",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "mlflow_secret_key",
}


def _secrets_file(home: Path) -> Path:
    return home / "airflow-secrets.json"


def _stored_secrets(home: Path) -> dict[str, str]:
    try:
        stored: dict[str, str] = json.loads(_secrets_file(home).read_text())
    except FileNotFoundError:
        return {}
    return stored


def _shared_secrets(home: Path, needed: list[str]) -> dict[str, str]:
    """The stored secrets, the ``needed`` ones generated and stored when missing (a secret the environment
    gives is never generated: a command in a shell without it would sign in with a stale one)."""
    path = _secrets_file(home)
    stored = _stored_secrets(home)
    generators = {
        "jwt_secret": lambda: secrets.token_urlsafe(32),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "mlflow_service_password": lambda: secrets.token_urlsafe(24),
        "mlflow_secret_key": lambda: secrets.token_urlsafe(32),
    }
    missing = [name for name in needed if name not in stored]
    if missing:
        stored.update({name: generators[name]() for name in missing})
        home.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(stored, indent=2) + "\n")
    return stored


def _log_port(port: int) -> int:
    if port + LOG_SERVER_PORT_OFFSET > 65535:
        raise ConfigError(
            f"airflow_port {port} is too high: its log server uses airflow_port + {LOG_SERVER_PORT_OFFSET}"
        )
    return port + LOG_SERVER_PORT_OFFSET


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
    """A free port for the Airflow API whose derived log-server port is free too."""
    for _ in range(50):
        port = free_port()
        if port + LOG_SERVER_PORT_OFFSET <= 65535 and port_free(port + LOG_SERVER_PORT_OFFSET):
            return port
    raise StackError("no free port pair for the Airflow API and its log server")


def port_free(port: int) -> bool:
    with closing(socket.socket()) as sock:
        # As servers bind: SO_REUSEADDR ignores TIME_WAIT leftovers but not a listener on any address.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True
