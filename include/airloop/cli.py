"""The ``airloop`` command: ``up``, ``demo``, ``land``, ``status``, ``promote``, ``rollback``."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from datetime import date

from airloop.core.errors import AirloopError
from airloop.core.settings import Settings, load_settings
from airloop.local.demo.driver import AirflowApi
from airloop.local.demo.followers import Follower
from airloop.local.demo.months import format_table
from airloop.local.demo.replay import replay
from airloop.local.demo.year import YearReplay, fresh_home
from airloop.local.env import mlflow_login
from airloop.local.stack import Stack
from airloop.model.context import ModelContext, load_model_specs
from airloop.model.task import primary_metric
from airloop.promote.promote import promote_version, rollback
from airloop.status import format_status, full_status, warehouse_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="run Airflow and MLflow locally until Ctrl-C")

    demo = commands.add_parser("demo", help="bring the stack up and replay 2013 through the whole loop")
    demo.add_argument(
        "--until",
        type=date.fromisoformat,
        default=date(2013, 12, 31),
        help="last day to replay (default: 2013-12-31)",
    )
    demo.add_argument(
        "--exit", action="store_true", help="stop the stack at the end instead of keeping the UIs up"
    )

    land = commands.add_parser("land", help="land replayed 2013 flights for a range of days")
    land.add_argument("start", type=date.fromisoformat)
    land.add_argument("end", type=date.fromisoformat)
    land.add_argument("--model", default="flights_delay")
    land.add_argument("--format", choices=["parquet", "csv"], default="parquet")

    status = commands.add_parser("status", help="a model's batches")
    status.add_argument("model")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--no-registry", action="store_true", help="only the warehouse (no MLflow call)")

    promote = commands.add_parser(
        "promote", help="run the promotion gate on a registered version and promote it"
    )
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--force", action="store_true", help="skip the gate (needs --reason; logged)")
    promote.add_argument("--reason", help="why (required with --force)")

    rollback = commands.add_parser("rollback", help="move the champion back to the previous one")
    rollback.add_argument("model")
    rollback.add_argument("--reason")

    args = parser.parse_args(argv)
    # `up` and `demo` report progress for minutes: a line shows when it happens, also when piped to a file.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        return _COMMANDS[args.command](args)
    except AirloopError as exc:
        print(f"airloop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _status(args: argparse.Namespace) -> int:
    _fail_fast_on_mlflow()
    ctx = ModelContext.load(args.model, _signed_in(load_settings()))
    result = warehouse_status(ctx) if args.no_registry else full_status(ctx)
    print(json.dumps(result, indent=2, default=str) if args.json else format_status(result))
    return 0


def _promote(args: argparse.Namespace) -> int:
    _fail_fast_on_mlflow()
    ctx = ModelContext.load(args.model, _signed_in(load_settings()))
    result = promote_version(ctx, args.version, force=args.force, reason=args.reason)
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.promoted else 1


def _rollback(args: argparse.Namespace) -> int:
    _fail_fast_on_mlflow()
    result = rollback(ModelContext.load(args.model, _signed_in(load_settings())), reason=args.reason)
    print(json.dumps(result.to_json(), indent=2))
    return 0


def _signed_in(settings: Settings) -> Settings:
    """Sign this process in to MLflow (its client reads the login from the environment) as the service user,
    unless ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` are set: promote and rollback move the champion alias,
    which only the service user may do."""
    for key, value in mlflow_login(settings, os.environ).items():
        os.environ.setdefault(key, value)
    return settings


def _fail_fast_on_mlflow() -> None:
    # By default the MLflow client retries an unreachable server for minutes; a person at a prompt wants to know.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _land(args: argparse.Namespace) -> int:
    config = load_settings()
    for folder in replay(config.landing_for(args.model), args.start, args.end, args.format):
        print(folder)
    return 0


def _up(_args: argparse.Namespace) -> int:
    with Stack(load_settings(), report=print) as stack:
        for line in stack.banner():
            print(line)
        died = stack.wait()
    return 1 if died else 0


def _demo(args: argparse.Namespace) -> int:
    # The tables load the first champions from MLflow: no download progress bars among them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    config = load_settings()
    model = "flights_delay"
    started = time.monotonic()
    fresh_home(config, model)
    with Stack(config, report=print) as stack:
        for line in stack.banner():
            print(line)
        api = AirflowApi(stack.airflow_url, "admin", stack.passwords["admin"])
        _signed_in(config)  # the tables read the champions from MLflow
        ctx = ModelContext.load(model, config)
        # The shipped models chained on flights_delay follow its year on their own cadence.
        followers = [
            Follower(api, ModelContext.load(spec.name, config), until=args.until, report=print)
            for spec in load_model_specs(config.models_dir).specs
            if model in getattr(spec.source, "after", [])
        ]
        year = YearReplay(
            api, ctx, until=args.until, alive=lambda: stack.wait(timeout=0) is None, followers=followers
        )
        try:
            table = year.run()
            tables = [(f, f.months()) for f in followers]
        finally:
            api.close()
        for shown, first, months in [(ctx, year.first_champion, table)] + [
            (f.ctx, f.first_champion, months) for f, months in tables
        ]:
            print()
            print(format_status(full_status(shown)))
            print()
            label = primary_metric(shown.spec).label
            print(
                f"{shown.name}, 2013 by month (serving: the champion versions that scored the month; {label} on its "
                f"labelled rows; {label} v{first}: the first champion, never retrained, on the same rows)"
            )
            print(format_table(months, first, label))
        for follower in followers:
            for note in follower.notes:
                print(f"{follower.name}: {note}")
        print(
            f"\nreplayed to {args.until} in {(time.monotonic() - started) / 60:.1f} min (stack start included)"
        )
        print(
            f"Airflow UI {stack.airflow_url} (admin / see {config.home / 'passwords.json'}), MLflow UI {stack.mlflow_url}"
        )
        if not args.exit:
            print("The UIs stay up; Ctrl-C stops everything.")
            if stack.wait() is not None:
                return 1
    return 0


_COMMANDS = {
    "up": _up,
    "demo": _demo,
    "land": _land,
    "status": _status,
    "promote": _promote,
    "rollback": _rollback,
}

if __name__ == "__main__":
    sys.exit(main())
