"""Champion moves survive a crash at any step: a process that promotes is SIGKILLed at each step of the move, and a
retry (or the next move of another process) leaves exactly one champion and exactly one record of the move.

A real MLflow server (its registry holds the aliases) and a real warehouse (SQLite and PostgreSQL in turn) hold the
two sides that must never disagree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from mlflow_server import MlflowServer

from airloop.core.events import EventKind, PromotionPayload
from airloop.model.registry import Registry
from airloop.promote.champion import STEPS, MoveOutcome, MoveRequest, move_champion
from airloop.store.db import open_warehouse
from airloop.store.events import events_of
from airloop.store.moves import find_move, pending_move

pytestmark = pytest.mark.integration

#: Runs one champion move in a process of its own; with a step name, the process kills itself (SIGKILL, no
#: cleanup of any kind) right after that step.
_MOVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from datetime import timedelta

    from airloop.core.events import PromotionPayload
    from airloop.model.registry import Registry
    from airloop.promote import champion
    from airloop.store.db import open_warehouse

    args = json.loads(sys.argv[1])
    champion.LEASE = timedelta(seconds=args["lease_seconds"])
    engine = open_warehouse(args["warehouse"])
    registry = Registry.open(args["model"], args["tracking_uri"])
    record = PromotionPayload(
        version=args["to"], champion_before=args["expected"], run_id="r", forced=False, reasons=["test"],
        airflow_run_id=None, decision={}, move_key=args["key"],
    )
    request = champion.MoveRequest(
        key=args["key"], kind="promotion", target=args["to"], expected=args["expected"], previous=args["expected"],
        record=record,
    )

    def step(name):
        if name == args.get("crash_at"):
            os.kill(os.getpid(), signal.SIGKILL)

    outcome = champion.move_champion(engine, registry, args["model"], request, step=step, poll=0.2)
    print(json.dumps({"moved": outcome.moved, "reason": outcome.reason, "recovered": [m.key for m in outcome.recovered]}))
    """
)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One MLflow server for the module; each test registers a model of its own on it."""
    folder = tmp_path_factory.mktemp("mlflow")
    with MlflowServer(f"sqlite:///{folder}/mlflow.db", folder / "artifacts", folder / "mlflow.log") as server:
        yield server.url


@pytest.fixture
def registry(tracking_uri, warehouse_url):
    """A registered model of the test's own with three versions, v1 the champion; the warehouse migrated."""
    from mlflow import MlflowClient

    name = f"crash_model_{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri)
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
    for _ in range(3):
        run = client.create_run(experiment)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    open_warehouse(warehouse_url)
    return Registry.open(name, tracking_uri)


def _move(
    registry: Registry, warehouse_url: str, *, key: str, to: str, expected: str, crash_at=None, lease=600
):
    """The move in a process of its own (killed right after ``crash_at``)."""
    args = {
        "model": registry.name,
        "tracking_uri": registry.tracking_uri,
        "warehouse": warehouse_url,
        "key": key,
        "to": to,
        "expected": expected,
        "crash_at": crash_at,
        "lease_seconds": lease,
    }
    done = subprocess.run(
        [sys.executable, "-c", _MOVER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"},
    )
    return done


def _retry(registry: Registry, warehouse_url: str, *, key: str, to: str, expected: str) -> MoveOutcome:
    """The same move again, in this process, as a retried task would carry it out."""
    record = PromotionPayload(
        version=to,
        champion_before=expected,
        run_id="r",
        forced=False,
        reasons=["test"],
        airflow_run_id=None,
        decision={},
        move_key=key,
    )
    request = MoveRequest(
        key=key, kind="promotion", target=to, expected=expected, previous=expected, record=record
    )
    return move_champion(open_warehouse(warehouse_url), registry, registry.name, request, poll=0.2)


def _promotions(engine, registry: Registry, key: str) -> list:
    return [e for e in events_of(engine, registry.name, [EventKind.PROMOTION]) if e.payload.move_key == key]


@pytest.mark.parametrize("step", STEPS)
def test_a_retry_after_a_kill_at_any_step_leaves_one_champion_and_one_record(registry, warehouse_url, step):
    engine = open_warehouse(warehouse_url)
    key = f"promotion:{registry.name}:run-1:v2"

    killed = _move(registry, warehouse_url, key=key, to="2", expected="1", crash_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    move = find_move(engine, key)
    assert move is not None and move.state == ("done" if step == "done" else "pending")

    assert _retry(registry, warehouse_url, key=key, to="2", expected="1").moved

    assert registry.aliases() == {"champion": "2", "previous": "1"}
    [record] = _promotions(engine, registry, key)
    assert (record.payload.version, record.payload.champion_before) == ("2", "1")
    assert find_move(engine, key).state == "done" and find_move(engine, key).event_id == record.id
    assert pending_move(engine, registry.name) is None

    # Retried once more, as Airflow may: nothing moves again, nothing is recorded twice.
    assert _retry(registry, warehouse_url, key=key, to="2", expected="1").moved
    assert len(_promotions(engine, registry, key)) == 1 and registry.aliases()["champion"] == "2"


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_move_left_half_done_by_a_dead_process_is_finished_by_the_next_mover(registry, warehouse_url):
    """The dead move's lease runs out; the next move (another decision, another key) finishes it first, then finds
    the champion is no longer the one it decided against and refuses, naming why."""
    engine = open_warehouse(warehouse_url)
    dead_key, next_key = f"promotion:{registry.name}:run-1:v2", f"promotion:{registry.name}:run-2:v3"

    killed = _move(registry, warehouse_url, key=dead_key, to="2", expected="1", crash_at="previous", lease=1)
    assert killed.returncode == -signal.SIGKILL
    assert registry.aliases() == {"champion": "1", "previous": "1"}  # half done: previous set, champion not

    follower = _move(registry, warehouse_url, key=next_key, to="3", expected="1", lease=1)
    assert follower.returncode == 0, follower.stderr[-2000:]
    outcome = json.loads(follower.stdout.splitlines()[-1])
    assert outcome["recovered"] == [dead_key]
    assert outcome["moved"] is False and "it was v1, it is now v2" in outcome["reason"]
    assert registry.aliases() == {"champion": "2", "previous": "1"}
    assert len(_promotions(engine, registry, dead_key)) == 1 and _promotions(engine, registry, next_key) == []
    assert find_move(engine, next_key).state == "aborted"
