"""Promotion: the gate run on the registry's versions, and the champion moves it decides (promotion, forced
promotion, rollback).

Aliases, never stages (:mod:`airloop.model.registry`). Every move goes through :mod:`airloop.promote.champion`,
which records it so that the registry and the event log cannot disagree. A rollback sets ``champion`` to
``previous`` and removes ``previous``: a second rollback is refused instead of flipping back to the model just
rolled back. Going forward again is :func:`promote_version` (the gate, or ``force``).

Every decision is logged to the challenger's MLflow run (``gate/*`` metrics, ``airloop.gate*`` tags and a JSON
artifact ``gate/<time>-<outcome>.json``; not params, which MLflow cannot overwrite when a version is judged again)
and to the warehouse event log.
"""

from __future__ import annotations

import getpass
import math
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airloop.core.contracts import Gate, PromotionResult, RollbackResult, Trained
from airloop.core.errors import AirloopError
from airloop.core.events import EventKind, PromotionPayload, PromotionRefusedPayload, RollbackPayload
from airloop.model.context import ModelContext
from airloop.model.features import model_input
from airloop.model.lineage import read_lineage
from airloop.model.registry import CHAMPION, PREVIOUS
from airloop.model.task import primary_metric
from airloop.promote.champion import MoveRequest, move_champion
from airloop.promote.gate import Approval, Decision, PromotionFacts, apply_approval, promotion_decision
from airloop.store.batches import read_batches
from airloop.store.events import events_of, record_event
from airloop.store.ledger import passed_entries

if TYPE_CHECKING:
    import numpy as np


class PromotionError(AirloopError):
    """A promotion or rollback cannot be carried out (unknown version, no previous champion, changed data...)."""


def evaluate_gate(ctx: ModelContext, trained: Trained, *, airflow_run_id: str | None = None) -> Gate:
    """Score the freshly trained challenger and the champion on the challenger's holdout and apply the policy.

    The decision is logged to the challenger's run; a refusal is also written to the event log.
    """
    decision = _judge(ctx, trained.version, trained.holdout.partitions, trained.holdout.checksums)
    outcome = (
        "awaiting approval" if decision.approval_required else ("passed" if decision.promote else "refused")
    )
    _log_decision(ctx, trained.version, trained.run_id, decision, outcome)
    gate = _gate(ctx, trained.version, trained.run_id, decision)
    if outcome == "refused":
        _record_refusal(ctx, gate, decision, stage="gate", airflow_run_id=airflow_run_id)
    return gate


def promote_challenger(
    ctx: ModelContext, gate: Gate, *, approval: Approval | None = None, airflow_run_id: str | None = None
) -> PromotionResult:
    """Carry out the gate's decision: move ``champion`` to the challenger if it passed (and, when the policy asks
    for it, a human approved). Refused (recorded) when the decision does not promote or the champion changed
    since it was made."""
    decision = Decision.of(gate)
    if approval is not None:
        decision = apply_approval(decision, approval)
    if not decision.promote:
        _log_decision(ctx, gate.challenger_version, gate.challenger_run_id, decision, "refused")
        stage = "gate" if approval is None else "approval"
        return _record_refusal(ctx, gate, decision, stage=stage, airflow_run_id=airflow_run_id)
    # One key per training run and version: a retried task resumes its own move, never starts a second one.
    key = f"promotion:{ctx.name}:{airflow_run_id or uuid.uuid4().hex}:v{gate.challenger_version}"
    return _promote(ctx, gate, decision, key=key, forced=False, by=None, airflow_run_id=airflow_run_id)


def record_approval_refusal(
    ctx: ModelContext, gate: Gate, approval: Approval, *, airflow_run_id: str | None = None
) -> PromotionResult:
    """Record that a human refused (or did not answer) the promotion the gate asked approval for."""
    decision = apply_approval(Decision.of(gate), replace(approval, approved=False))
    _log_decision(ctx, gate.challenger_version, gate.challenger_run_id, decision, "refused")
    return _record_refusal(ctx, gate, decision, stage="approval", airflow_run_id=airflow_run_id)


def promote_version(
    ctx: ModelContext, version: str | int, *, force: bool = False, reason: str | None = None
) -> PromotionResult:
    """``airloop promote <model> <version>``: the gate on the version's own holdout, then the move.

    The person running it counts as the approver when the policy is manual. ``force`` skips the gate and needs a
    ``reason``; both are logged.
    """
    version = str(version)
    if force and not (reason and reason.strip()):
        raise PromotionError("a forced promotion needs a reason (--reason)")
    run_id = ctx.registry.run_id_of(version)
    champion = ctx.registry.version_of(CHAMPION)
    if champion == version:
        raise PromotionError(f"{ctx.spec.registered_model} version {version} is already the champion")
    by = getpass.getuser()
    if force:
        decision = Decision(
            promote=True,
            reasons=[f"forced by {by}: {reason}"],
            evidence={"forced": True, "by": by, "champion_version": champion, "challenger_version": version},
        )
    else:
        lineage = read_lineage(ctx.registry.client.get_run(run_id))
        holdout = lineage.holdout
        decision = _judge(ctx, version, holdout, [lineage.checksums[p] for p in holdout])
        if decision.approval_required:
            decision = apply_approval(decision, Approval(approved=True, by=f"{by} (airloop promote)"))
    gate = _gate(ctx, version, run_id, decision)
    if not decision.promote:
        _log_decision(ctx, version, run_id, decision, "refused")
        return _record_refusal(ctx, gate, decision, stage="gate", airflow_run_id=None)
    key = f"promotion:{ctx.name}:cli-{uuid.uuid4().hex}:v{version}"
    return _promote(ctx, gate, decision, key=key, forced=force, by=by, airflow_run_id=None)


def rollback(ctx: ModelContext, *, reason: str | None = None) -> RollbackResult:
    """``airloop rollback <model>``: ``champion`` back to ``previous``; ``previous`` is then removed."""
    name = ctx.spec.registered_model
    current = ctx.registry.aliases()
    champion, previous = current.get(CHAMPION), current.get(PREVIOUS)
    if champion is None:
        raise PromotionError(f"{name} has no champion to roll back")
    if previous is None:
        raise PromotionError(f"{name} has no previous champion to roll back to (v{champion} is champion)")
    by = getpass.getuser()
    key = f"rollback:{ctx.name}:cli-{uuid.uuid4().hex}:v{champion}-v{previous}"
    record = RollbackPayload(
        version=previous, champion_before=champion, by=by, reasons=[reason] if reason else [], move_key=key
    )
    request = MoveRequest(
        key=key, kind="rollback", target=previous, expected=champion, previous=None, record=record
    )
    outcome = move_champion(ctx.warehouse, ctx.registry, ctx.name, request)
    if not outcome.moved:
        raise PromotionError(outcome.reason or "the rollback was not carried out")
    client = ctx.registry.client
    rolled_back_run = ctx.registry.run_id_of(champion)
    client.set_model_version_tag(name, champion, "airloop.rolled_back", reason or "yes")
    client.log_dict(rolled_back_run, {**record.to_json(), "at": _now()}, f"gate/{_stamp()}-rolled-back.json")
    client.set_tag(rolled_back_run, "airloop.gate", "rolled back")
    return RollbackResult(
        model=ctx.name, rolled_back=True, champion=previous, from_version=champion, reason=reason
    )


def champion_summary(ctx: ModelContext) -> dict[str, Any]:
    """For ``airloop status``: the champion with its holdout metrics, and the other aliases."""
    registry = ctx.registry
    current = registry.aliases()
    champion = None
    found = registry.champion_run()
    if found is not None:
        version, run = found
        details = registry.client.get_model_version(registry.name, version)
        champion = {
            "version": version,
            "run_id": run.info.run_id,
            "registered_at": datetime.fromtimestamp(details.creation_timestamp / 1000, UTC).isoformat(),
            "metrics": {
                k.removeprefix("holdout/"): v for k, v in run.data.metrics.items() if k.startswith("holdout/")
            },
            "data": run.data.tags.get("data.partitions"),
            "code_version": run.data.tags.get("airloop.code_version"),
            "run_url": registry.run_url(run.info.experiment_id, run.info.run_id),
        }
    return {"model": ctx.name, "registered_model": registry.name, "champion": champion, "aliases": current}


def _judge(ctx: ModelContext, version: str, partitions: Sequence[str], checksums: Sequence[str]) -> Decision:
    """The gate's decision for ``version`` against the current champion on the given holdout partitions."""
    spec, task = ctx.spec, ctx.task
    if spec.promotion is None:
        raise PromotionError(f"{spec.name}: the spec has no 'promotion' section")
    _check_unchanged(ctx, partitions, checksums)
    rows, y, _unlabelled = task.labelled(read_batches(ctx.warehouse, spec, partitions, order="time"))
    champion = ctx.registry.version_of(CHAMPION)
    if champion == version:
        raise PromotionError(f"{spec.registered_model} version {version} is already the champion")

    def predicted(v: str) -> np.ndarray:
        pipeline = ctx.registry.load(v)
        return task.predict(pipeline, model_input(rows, spec, pipeline))

    facts = PromotionFacts(
        y_true=y.to_numpy(),
        challenger=predicted(version),
        champion=predicted(champion) if champion else None,
        slices={column: rows[column].to_numpy() for column in spec.promotion.slices},
        challenger_version=version,
        champion_version=champion,
    )
    seed = spec.training.seed if spec.training else 0
    decision = promotion_decision(facts, spec.promotion, task, primary_metric(spec), seed=seed)
    holdout = {"partitions": list(partitions), "checksums": list(checksums)}
    return replace(decision, evidence={**decision.evidence, "holdout": holdout})


def _check_unchanged(ctx: ModelContext, partitions: Sequence[str], checksums: Sequence[str]) -> None:
    passed = passed_entries(ctx.warehouse, ctx.name)
    changed = [
        p
        for p, checksum in zip(partitions, checksums, strict=True)
        if p not in passed or passed[p].checksum != checksum
    ]
    if changed:
        raise PromotionError(
            f"{ctx.name}: holdout partition(s) {', '.join(changed)} were reloaded or invalidated since the version "
            "was trained; the comparison would not be on the same data: train a new challenger"
        )


def _gate(ctx: ModelContext, version: str, run_id: str, decision: Decision) -> Gate:
    return Gate(
        model=ctx.name,
        challenger_version=version,
        challenger_run_id=run_id,
        champion_version=decision.evidence.get("champion_version"),
        promote=decision.promote,
        reasons=decision.reasons,
        evidence=decision.evidence,
        approval_required=decision.approval_required,
    )


def _promote(
    ctx: ModelContext,
    gate: Gate,
    decision: Decision,
    *,
    key: str,
    forced: bool,
    by: str | None,
    airflow_run_id: str | None,
) -> PromotionResult:
    version, expected = gate.challenger_version, gate.champion_version
    record = PromotionPayload(
        version=version,
        champion_before=expected,
        run_id=gate.challenger_run_id,
        forced=forced,
        by=by,
        reasons=decision.reasons,
        airflow_run_id=airflow_run_id,
        decision=decision.as_dict(),
        move_key=key,
    )
    request = MoveRequest(
        key=key, kind="promotion", target=version, expected=expected, previous=expected, record=record
    )
    outcome = move_champion(ctx.warehouse, ctx.registry, ctx.name, request)
    if not outcome.moved:
        refused = Decision(False, [outcome.reason or "the move was not carried out"], decision.evidence)
        _log_decision(ctx, version, gate.challenger_run_id, refused, "refused")
        return _record_refusal(ctx, gate, refused, stage="move", airflow_run_id=airflow_run_id)
    _log_decision(ctx, version, gate.challenger_run_id, decision, "forced" if forced else "promoted")
    return PromotionResult(
        model=ctx.name,
        promoted=True,
        version=version,
        champion_before=expected,
        forced=forced,
        reasons=decision.reasons,
    )


def _record_refusal(
    ctx: ModelContext, gate: Gate, decision: Decision, *, stage: str, airflow_run_id: str | None
) -> PromotionResult:
    payload = PromotionRefusedPayload(
        version=gate.challenger_version,
        champion_before=gate.champion_version,
        run_id=gate.challenger_run_id,
        stage=stage,
        reasons=decision.reasons,
        airflow_run_id=airflow_run_id,
        decision=decision.as_dict(),
    )
    # Within one Airflow run a refusal is written once, however often its task is retried.
    key = (
        f"promotion_refused:{ctx.name}:{airflow_run_id}:{gate.challenger_version}:{stage}"
        if airflow_run_id
        else None
    )
    record_event(ctx.warehouse, ctx.name, payload, dedup_key=key)
    return PromotionResult(
        model=ctx.name,
        promoted=False,
        version=gate.challenger_version,
        champion_before=gate.champion_version,
        stage=stage,  # type: ignore[arg-type]
        reasons=decision.reasons,
    )


def _log_decision(ctx: ModelContext, version: str, run_id: str, decision: Decision, outcome: str) -> None:
    """The decision on the challenger's run and version: ``gate/*`` metrics, tags and the full JSON."""
    from mlflow.entities import Metric, RunTag

    client = ctx.registry.client
    evidence = decision.evidence
    metric = evidence.get("metric")
    values: dict[str, Any] = {"gate/promote": float(decision.promote)}
    if metric:
        values[f"gate/challenger_{metric}"] = evidence["challenger"][metric]
        if evidence.get("champion"):
            values[f"gate/champion_{metric}"] = evidence["champion"][metric]
            values["gate/improvement"] = evidence.get("improvement")
            values["gate/bootstrap_low"] = evidence.get("bootstrap", {}).get("low")
            values["gate/bootstrap_high"] = evidence.get("bootstrap", {}).get("high")
            values["gate/worst_slice_regression"] = evidence.get("worst_slice_regression")
    millis = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [
        Metric(k, float(v), millis, 0) for k, v in values.items() if v is not None and math.isfinite(float(v))
    ]
    tags = [
        RunTag("airloop.gate", outcome),
        RunTag("airloop.gate.reasons", "; ".join(decision.reasons)[:5000]),
        RunTag("airloop.gate.champion_version", _v(evidence.get("champion_version"))),
    ]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.log_dict(
        run_id,
        {"outcome": outcome, "at": _now(), **decision.as_dict()},
        f"gate/{_stamp()}-{outcome.replace(' ', '-')}.json",
    )
    client.set_model_version_tag(ctx.spec.registered_model, version, "airloop.gate", outcome)


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def promotion_history(ctx: ModelContext) -> list[dict[str, Any]]:
    """Every champion move and refused promotion of the model, oldest first, from the event log."""
    kinds = [EventKind.PROMOTION, EventKind.PROMOTION_REFUSED, EventKind.ROLLBACK]
    return [
        {
            "at": event.created_at.isoformat() if event.created_at else None,
            "kind": event.kind.value,
            "version": event.payload.version,
            # The champion when it happened: replaced (promotion, rollback) or kept (refusal).
            "from_version": event.payload.champion_before,
            "forced": getattr(event.payload, "forced", False),
            "by": getattr(event.payload, "by", None),
            "reasons": list(event.payload.reasons),
        }
        for event in events_of(ctx.warehouse, ctx.name, kinds)
    ]
