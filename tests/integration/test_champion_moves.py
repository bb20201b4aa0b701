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

import pytest
from mlflow_server import MlflowServer

from airloop.core.events import EventKind
from airloop.model.registry import Registry
from airloop.promote.champion import STEPS
from airloop.store.db import open_warehouse
from airloop.store.events import events_of
from airloop.store.moves import find_move, pending_move

pytestmark = pytest.mark.integration

MODEL = "crash_model"

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


@pytest.fixture
def registry(warehouse_url, tmp_path):
    """A registered model with three versions, v1 the champion; the warehouse migrated."""
    from mlflow import MlflowClient

    with MlflowServer(
        f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts", tmp_path / "mlflow.log"
    ) as server:
        client = MlflowClient(server.url)
        client.create_registered_model(MODEL)
        experiment = client.create_experiment(MODEL)
        for _ in range(3):
            run = client.create_run(experiment)
            client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(MODEL, "champion", "1")
        open_warehouse(warehouse_url)
        yield Registry.open(MODEL, server.url)


def _move(
    registry: Registry, warehouse_url: str, *, key: str, to: str, expected: str, crash_at=None, lease=600
):
    args = {
        "model": MODEL,
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


def _promotions(engine, key: str) -> list:
    return [e for e in events_of(engine, MODEL, [EventKind.PROMOTION]) if e.payload.move_key == key]


@pytest.mark.parametrize("step", STEPS)
def test_a_retry_after_a_kill_at_any_step_leaves_one_champion_and_one_record(registry, warehouse_url, step):
    engine = open_warehouse(warehouse_url)
    key = f"promotion:{MODEL}:run-1:v2"

    killed = _move(registry, warehouse_url, key=key, to="2", expected="1", crash_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    move = find_move(engine, key)
    assert move is not None and move.state == ("done" if step == "done" else "pending")

    retried = _move(registry, warehouse_url, key=key, to="2", expected="1")
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert json.loads(retried.stdout.splitlines()[-1])["moved"] is True

    assert registry.aliases() == {"champion": "2", "previous": "1"}
    [record] = _promotions(engine, key)
    assert (record.payload.version, record.payload.champion_before) == ("2", "1")
    assert find_move(engine, key).state == "done" and find_move(engine, key).event_id == record.id
    assert pending_move(engine, MODEL) is None

    # Retried once more, as Airflow may: nothing moves again, nothing is recorded twice.
    again = _move(registry, warehouse_url, key=key, to="2", expected="1")
    assert json.loads(again.stdout.splitlines()[-1])["moved"] is True
    assert len(_promotions(engine, key)) == 1 and registry.aliases()["champion"] == "2"


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_move_left_half_done_by_a_dead_process_is_finished_by_the_next_mover(registry, warehouse_url):
    """The dead move's lease runs out; the next move (another decision, another key) finishes it first, then finds
    the champion is no longer the one it decided against and refuses, naming why."""
    engine = open_warehouse(warehouse_url)
    dead_key, next_key = f"promotion:{MODEL}:run-1:v2", f"promotion:{MODEL}:run-2:v3"

    killed = _move(registry, warehouse_url, key=dead_key, to="2", expected="1", crash_at="previous", lease=1)
    assert killed.returncode == -signal.SIGKILL
    assert registry.aliases() == {"champion": "1", "previous": "1"}  # half done: previous set, champion not

    follower = _move(registry, warehouse_url, key=next_key, to="3", expected="1", lease=1)
    assert follower.returncode == 0, follower.stderr[-2000:]
    outcome = json.loads(follower.stdout.splitlines()[-1])
    assert outcome["recovered"] == [dead_key]
    assert outcome["moved"] is False and "it was v1, it is now v2" in outcome["reason"]
    assert registry.aliases() == {"champion": "2", "previous": "1"}
    assert len(_promotions(engine, dead_key)) == 1 and _promotions(engine, next_key) == []
    assert find_move(engine, next_key).state == "aborted"
