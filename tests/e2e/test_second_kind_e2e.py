"""A second kind of model through the closed loop on the real stack: a regression (the flights' time in the air,
in minutes, judged by RMSE) from its first champion through drift, retraining and promotion, driven through the
REST API as `test_loop_e2e` drives the binary flights_delay.

A first champion is trained on February; a July batch lands, is ingested, scored and monitored; July against a
February reference drifts; the retrain DAG answers the drift Asset, retrains on late June to July and the gate
promotes the challenger (air time is seasonal: a winter model misjudges July by 23 minutes of RMSE, a summer one by
10); the next batch is scored by the new version. The helpers and the days are test_loop_e2e's.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from conftest import SECOND_KIND
from test_loop_e2e import (
    DRIFTED,
    FIRST_WINDOW,
    MONITOR_LOGICAL,
    NEXT,
    RECENT,
    _at,
    _land,
    _predictions,
    _runs,
    _wait_alert,
    _wait_scored,
)

from airloop.core.contracts import Gate, MonitorResult, PromotionResult, RetrainOutcome
from airloop.local.demo.replay import day_frame
from airloop.model.context import ModelContext
from airloop.model.task import primary_metric
from airloop.retrain.policy import PROMOTED
from airloop.store.db import sync_table
from airloop.store.ledger import PASSED, LedgerEntry, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.e2e

MODEL = SECOND_KIND
INGEST, SCORE, TRAIN, MONITOR, RETRAIN = (
    f"{MODEL}_{kind}" for kind in ("ingest", "score", "train", "monitor", "retrain")
)


@pytest.fixture(scope="module")
def regression(stack) -> ModelContext:
    ctx = ModelContext.load(MODEL, stack.settings)
    assert ctx.spec.target.kind == "regression" and primary_metric(ctx.spec).name == "rmse"
    sync_table(ctx.warehouse, batches_table(ctx.spec))
    for day in FIRST_WINDOW + RECENT:
        frame = day_frame(day)
        checksum = hashlib.sha256(f"e2e-seed:{MODEL}:{day}:{len(frame)}".encode()).hexdigest()
        replace_partition(ctx.warehouse, ctx.spec, frame, LedgerEntry(day.isoformat(), PASSED, checksum))
    for dag_id in (INGEST, SCORE, TRAIN, MONITOR, RETRAIN):
        stack.wait_for_dag(dag_id)
    return ctx


def test_a_regression_model_lives_through_drift_retrain_and_promotion(stack, regression):
    ctx = regression
    # (1) the first champion, through the train DAG: RMSE on its February holdout under the 60-minute floor.
    run_id = stack.trigger(TRAIN, conf={"window_end": FIRST_WINDOW[-1].isoformat()})
    run = stack.wait_for_run(TRAIN, run_id, timeout=360)
    assert run["state"] == "success" and run["task_states"]["promote_champion"] == "success", run[
        "task_states"
    ]
    v1 = PromotionResult.model_validate(stack.xcom(TRAIN, run_id, "promote_champion")).version
    gate = Gate.model_validate(stack.xcom(TRAIN, run_id, "evaluate_gate", key="gate"))
    assert gate.promote and any("rmse" in reason for reason in gate.reasons), gate.reasons

    # (2) the July batch lands, is ingested day by day and scored by v1 (a predicted number per row).
    _land(ctx, DRIFTED)
    for day in DRIFTED:
        assert [r["state"] for r in stack.backfill(INGEST, _at(day), _at(day))] == ["success"]
        _wait_scored(ctx, [day])
    assert all(v == {v1} for v in _predictions(ctx, [d.isoformat() for d in DRIFTED]).values())

    # (3) the monitor finds drift (features, or the RMSE on the arrived labels) and alerts it.
    retrains_before = {r["dag_run_id"] for r in _runs(stack, RETRAIN)}
    monitor_run = stack.trigger(MONITOR, logical_date=MONITOR_LOGICAL.isoformat())
    run = stack.wait_for_run(MONITOR, monitor_run, timeout=300)
    assert run["state"] == "success", run["task_states"]
    result = MonitorResult.model_validate(stack.xcom(MONITOR, monitor_run, "monitor_window", key="result"))
    window = f"{DRIFTED[0]}..{DRIFTED[-1]}"
    assert result.drifted and result.window.label == window, result
    assert result.quality is not None and result.quality.metric == "rmse", result.quality
    _wait_alert(stack, f"{MODEL}: drift in {window}", f"Model {MODEL} has drifted in {window}")

    # (4) the retrain DAG runs off the drift Asset, retrains on late June-July and the gate promotes.
    deadline = time.monotonic() + 60
    while not (new := [r for r in _runs(stack, RETRAIN) if r["dag_run_id"] not in retrains_before]):
        assert time.monotonic() < deadline, "the drift Asset started no retrain run"
        time.sleep(1)
    retrain_id = new[0]["dag_run_id"]
    run = stack.wait_for_run(RETRAIN, retrain_id, timeout=420)
    assert run["state"] == "success", run["task_states"]
    outcome = RetrainOutcome.model_validate(stack.xcom(RETRAIN, retrain_id, "record_outcome"))
    print(f"[second kind] retrain outcome: {outcome}")
    assert outcome.outcome == PROMOTED and outcome.champion_before == v1 and outcome.version != v1, outcome
    v2 = str(outcome.version)
    _wait_alert(
        stack,
        f"retrained, v{v2} promoted (drift in {window})",
        f"retrained on drift in {window}: version {v2} is the new champion",
    )

    # (5) the next batch is scored by the new champion; the July days keep v1's predictions.
    _land(ctx, [NEXT])
    assert [r["state"] for r in stack.backfill(INGEST, _at(NEXT), _at(NEXT))] == ["success"]
    assert _wait_scored(ctx, [NEXT]) == {NEXT.isoformat(): {v2}}
    assert all(v == {v1} for v in _predictions(ctx, [d.isoformat() for d in DRIFTED]).values())
