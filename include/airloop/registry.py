"""The MLflow registry side of promotion: scoring challenger and champion for the gate, alias moves, rollback.

Aliases, never stages: ``challenger`` (the latest trained version), ``champion`` (what scoring loads as
``models:/<name>@champion``) and ``previous`` (the champion it replaced, the target of a rollback).

Every move of ``champion`` (promotion, forced promotion, rollback) happens under a lock held in the warehouse:
a row with a fixed unique key inserted first in a transaction and deleted before its commit. A concurrent mover's
insert of the same key waits until that transaction ends (PostgreSQL's unique index, SQLite's write lock), so moves
are serialised across processes and hosts; a crash rolls the row back, so no lock is ever left behind. Under the
lock the champion is read again and must still be the one the decision was made against, else the move is
refused. The event (``promotion`` / ``rollback``) is written in the same transaction.

A rollback sets ``champion`` to ``previous`` and deletes ``previous``: a second rollback is refused instead of
flipping back to the model just rolled back. Going forward again is ``promote_version`` (the gate, or ``force``).

Every decision is logged to the challenger's MLflow run (``gate/*`` metrics, ``airloop.gate*`` tags and a JSON
artifact ``gate/<time>-<outcome>.json``; not params, which MLflow cannot overwrite when a version is judged again)
and to the warehouse event log.
"""

from __future__ import annotations

import getpass
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from airloop import warehouse
from airloop.errors import AirloopError
from airloop.ingest import model_spec
from airloop.promotion import Approval, Decision, PromotionFacts, apply_approval, promotion_decision
from airloop.settings import Settings, settings
from airloop.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

CHAMPION = "champion"
PREVIOUS = "previous"
#: Event kinds written here.
PROMOTION, PROMOTION_REFUSED, ROLLBACK = "promotion", "promotion_refused", "rollback"
_LOCK_KIND = "champion_lock"


class PromotionError(AirloopError):
    """A promotion or rollback cannot be carried out (unknown version, no previous champion, changed data...)."""


@dataclass(frozen=True)
class _Registry:
    spec: ModelSpec
    engine: Engine
    client: MlflowClient
    tracking_uri: str

    @property
    def name(self) -> str:
        return self.spec.registered_model


def evaluate_gate(
    model: str,
    trained: Mapping[str, Any],
    *,
    airflow_run_id: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Score the freshly trained challenger and the champion on the challenger's holdout and apply the policy.

    ``trained`` is what :func:`airloop.training.train_challenger` returned. The decision is logged to the
    challenger's run; a refusal is also written to the event log. Returns the decision (JSON-able) with the
    versions it was made for.
    """
    registry = _registry(model, config)
    version, run_id = str(trained["version"]), trained["run_id"]
    decision = _judge(registry, version, trained["holdout"]["partitions"], trained["holdout"]["checksums"])
    outcome = (
        "awaiting approval" if decision.approval_required else ("passed" if decision.promote else "refused")
    )
    _log_decision(registry, version, run_id, decision, outcome)
    gate = _gate_dict(registry, version, run_id, decision)
    if outcome == "refused":
        _record_refusal(registry, gate, decision, stage="gate", airflow_run_id=airflow_run_id)
    return gate


def promote_challenger(
    model: str,
    gate: Mapping[str, Any],
    *,
    approval: Mapping[str, Any] | None = None,
    airflow_run_id: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Carry out the gate's decision: move ``champion`` to the challenger if it passed (and, when the policy
    asks for it, a human approved: ``approval`` is ``{"approved": bool, "by": str}``).

    Refused (recorded, ``promoted`` False) when the decision does not promote or the champion changed since it
    was made.
    """
    registry = _registry(model, config)
    decision = Decision.from_dict(gate)
    if approval is not None:
        decision = apply_approval(
            decision, Approval(approved=bool(approval["approved"]), by=approval.get("by"))
        )
    if not decision.promote:
        _log_decision(registry, gate["challenger_version"], gate["challenger_run_id"], decision, "refused")
        stage = "gate" if approval is None else "approval"
        return _record_refusal(registry, gate, decision, stage=stage, airflow_run_id=airflow_run_id)
    return _promote(registry, gate, decision, forced=False, reason=None, airflow_run_id=airflow_run_id)


def record_approval_refusal(
    model: str,
    gate: Mapping[str, Any],
    approval: Mapping[str, Any],
    *,
    airflow_run_id: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Record that a human refused (or did not answer) the promotion the gate asked approval for."""
    registry = _registry(model, config)
    decision = apply_approval(Decision.from_dict(gate), Approval(approved=False, by=approval.get("by")))
    _log_decision(registry, gate["challenger_version"], gate["challenger_run_id"], decision, "refused")
    return _record_refusal(registry, gate, decision, stage="approval", airflow_run_id=airflow_run_id)


def promote_version(
    model: str,
    version: str | int,
    *,
    force: bool = False,
    reason: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """``airloop promote <model> <version>``: the gate on the version's own holdout, then the move.

    The person running it counts as the approver when the policy is manual. ``force`` skips the gate and needs a
    ``reason``; both are logged. Returns ``{"promoted": bool, "reasons": [...], ...}``.
    """
    registry = _registry(model, config)
    version = str(version)
    if force and not (reason and reason.strip()):
        raise PromotionError("a forced promotion needs a reason (--reason)")
    run_id = _version_run(registry, version)
    champion = aliases(registry.client, registry.name).get(CHAMPION)
    if champion == version:
        raise PromotionError(f"{registry.name} version {version} is already the champion")
    by = getpass.getuser()
    if force:
        decision = Decision(
            promote=True,
            reasons=[f"forced by {by}: {reason}"],
            evidence={"forced": True, "by": by, "champion_version": champion, "challenger_version": version},
        )
    else:
        holdout = _recorded_holdout(registry, run_id)
        decision = _judge(registry, version, holdout["partitions"], holdout["checksums"])
        if decision.approval_required:
            decision = apply_approval(decision, Approval(approved=True, by=f"{by} (airloop promote)"))
    gate = _gate_dict(registry, version, run_id, decision)
    if not decision.promote:
        _log_decision(registry, version, run_id, decision, "refused")
        return _record_refusal(registry, gate, decision, stage="gate", airflow_run_id=None)
    return _promote(registry, gate, decision, forced=force, reason=reason, airflow_run_id=None)


def rollback(model: str, *, reason: str | None = None, config: Settings | None = None) -> dict[str, Any]:
    """``airloop rollback <model>``: ``champion`` back to ``previous``; ``previous`` is then deleted."""
    registry = _registry(model, config)
    current = aliases(registry.client, registry.name)
    champion, previous = current.get(CHAMPION), current.get(PREVIOUS)
    if champion is None:
        raise PromotionError(f"{registry.name} has no champion to roll back")
    if previous is None:
        raise PromotionError(
            f"{registry.name} has no previous champion to roll back to (v{champion} is champion)"
        )
    by = getpass.getuser()
    payload = {"from_version": champion, "version": previous, "reason": reason, "by": by}
    refusal = _move_champion(
        registry, to=previous, expected=champion, previous=None, kind=ROLLBACK, payload=payload
    )
    if refusal:
        raise PromotionError(refusal)
    rolled_back_run = _version_run(registry, champion)
    registry.client.set_model_version_tag(registry.name, champion, "airloop.rolled_back", reason or "yes")
    registry.client.log_dict(rolled_back_run, {**payload, "at": _now()}, f"gate/{_stamp()}-rolled-back.json")
    registry.client.set_tag(rolled_back_run, "airloop.gate", "rolled back")
    return {
        "model": model,
        "rolled_back": True,
        "champion": previous,
        "from_version": champion,
        "reason": reason,
    }


def champion_summary(model: str, *, config: Settings | None = None) -> dict[str, Any]:
    """For ``airloop status``: the champion with its holdout metrics, the other aliases, and the promotion
    history from the event log (oldest first)."""
    registry = _registry(model, config)
    current = aliases(registry.client, registry.name)
    champion = None
    if CHAMPION in current:
        version = registry.client.get_model_version(registry.name, current[CHAMPION])
        run = registry.client.get_run(version.run_id)
        champion = {
            "version": version.version,
            "run_id": version.run_id,
            "registered_at": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(),
            "metrics": {
                k.removeprefix("holdout/"): v for k, v in run.data.metrics.items() if k.startswith("holdout/")
            },
            "data": run.data.tags.get("data.partitions"),
            "code_version": run.data.tags.get("airloop.code_version"),
            "run_url": f"{registry.tracking_uri}/#/experiments/{run.info.experiment_id}/runs/{version.run_id}",
        }
    history = [
        {
            "at": event["created_at"].isoformat() if event["created_at"] else None,
            "kind": event["kind"],
            "version": payload.get("version"),
            # The champion when it happened: replaced (promotion, rollback) or kept (refusal).
            "from_version": payload.get("from_version") or payload.get("champion_version"),
            "forced": payload.get("forced", False),
            "by": payload.get("by"),
            "reasons": payload.get("reasons") or [r for r in [payload.get("reason")] if r],
        }
        for event in warehouse.events_for(registry.engine, model, [PROMOTION, PROMOTION_REFUSED, ROLLBACK])
        for payload in [event["payload"]]
    ]
    return {
        "model": model,
        "registered_model": registry.name,
        "champion": champion,
        "aliases": current,
        "history": history,
    }


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """The registered model's aliases (alias -> version); empty when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def champion_run(client: MlflowClient, name: str) -> tuple[str, Any] | None:
    """The champion's version and the MLflow run that trained it (its params, tags, artifacts); ``None`` without a
    champion."""
    version = aliases(client, name).get(CHAMPION)
    if version is None:
        return None
    return str(version), client.get_run(client.get_model_version(name, version).run_id)


def predict_proba(pipeline: Any, frame: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Probabilities of the positive class, on the features the pipeline was trained with."""
    from airloop.training import feature_frame

    return pipeline.predict_proba(feature_frame(frame, spec, list(pipeline.feature_names_in_)))[:, 1]


def _registry(model: str, config: Settings | None) -> _Registry:
    import mlflow
    from mlflow import MlflowClient

    config = config or settings()
    spec = model_spec(model, config)
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine)
    # Model loads (models:/...) go through the fluent API, which reads the process-wide URI.
    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    return _Registry(spec, engine, MlflowClient(config.mlflow_tracking_uri), config.mlflow_tracking_uri)


def _judge(
    registry: _Registry, version: str, partitions: Sequence[str], checksums: Sequence[str]
) -> Decision:
    """The gate's decision for ``version`` against the current champion on the given holdout partitions."""
    import mlflow

    from airloop.training import labelled, read_batches

    spec = registry.spec
    if spec.promotion is None:
        raise PromotionError(f"{spec.name}: the spec has no 'promotion' section")
    _check_unchanged(registry, partitions, checksums)
    rows, y, _unlabelled = labelled(read_batches(registry.engine, spec, partitions), spec)
    champion = aliases(registry.client, registry.name).get(CHAMPION)
    if champion == version:
        raise PromotionError(f"{registry.name} version {version} is already the champion")

    def scores(v: str) -> np.ndarray:
        return predict_proba(mlflow.sklearn.load_model(f"models:/{registry.name}/{v}"), rows, spec)

    facts = PromotionFacts(
        y_true=y.to_numpy(),
        challenger=scores(version),
        champion=scores(champion) if champion else None,
        slices={column: rows[column].to_numpy() for column in spec.promotion.slices},
        challenger_version=version,
        champion_version=champion,
    )
    decision = promotion_decision(facts, spec.promotion, seed=spec.training.seed if spec.training else 0)
    holdout = {"partitions": list(partitions), "checksums": list(checksums)}
    return replace(decision, evidence={**decision.evidence, "holdout": holdout})


def _check_unchanged(registry: _Registry, partitions: Sequence[str], checksums: Sequence[str]) -> None:
    ledger = {r["partition"]: r for r in warehouse.ledger_rows(registry.engine, registry.spec.name)}
    changed = [
        p
        for p, checksum in zip(partitions, checksums, strict=True)
        if p not in ledger or ledger[p]["status"] != "passed" or ledger[p]["checksum"] != checksum
    ]
    if changed:
        raise PromotionError(
            f"{registry.spec.name}: holdout partition(s) {', '.join(changed)} were reloaded or invalidated since "
            "the version was trained; the comparison would not be on the same data: train a new challenger"
        )


def _gate_dict(registry: _Registry, version: str, run_id: str, decision: Decision) -> dict[str, Any]:
    return {
        "model": registry.spec.name,
        "challenger_version": version,
        "challenger_run_id": run_id,
        "champion_version": decision.evidence.get("champion_version"),
        **decision.as_dict(),
    }


def _promote(
    registry: _Registry,
    gate: Mapping[str, Any],
    decision: Decision,
    *,
    forced: bool,
    reason: str | None,
    airflow_run_id: str | None,
) -> dict[str, Any]:
    version, run_id = gate["challenger_version"], gate["challenger_run_id"]
    expected = gate["champion_version"]
    payload = {
        "version": version,
        "from_version": expected,
        "run_id": run_id,
        "forced": forced,
        "reason": reason,
        "reasons": decision.reasons,
        "airflow_run_id": airflow_run_id,
        "decision": decision.as_dict(),
    }
    refusal = _move_champion(
        registry, to=version, expected=expected, previous=expected, kind=PROMOTION, payload=payload
    )
    if refusal:
        refused = Decision(False, [refusal], decision.evidence)
        _log_decision(registry, version, run_id, refused, "refused")
        return _record_refusal(registry, gate, refused, stage="move", airflow_run_id=airflow_run_id)
    _log_decision(registry, version, run_id, decision, "forced" if forced else "promoted")
    return {
        "model": registry.spec.name,
        "promoted": True,
        "version": version,
        "previous": expected,
        "forced": forced,
        "reasons": decision.reasons,
    }


def _move_champion(
    registry: _Registry,
    *,
    to: str,
    expected: str | None,
    previous: str | None,
    kind: str,
    payload: Mapping[str, Any],
) -> str | None:
    """Point ``champion`` at ``to`` and ``previous`` at ``previous`` (deleted if None), under the lock, if the
    champion is still ``expected``; returns why not otherwise."""
    model, name, client = registry.spec.name, registry.name, registry.client
    lock = warehouse.events.c.dedup_key == f"{_LOCK_KIND}:{model}"
    with registry.engine.begin() as conn:
        # The first statement of the transaction: a concurrent mover blocks here until this one commits.
        conn.execute(
            warehouse.events.insert().values(
                warehouse.event_row(model, _LOCK_KIND, {"to": to}, dedup_key=f"{_LOCK_KIND}:{model}")
            )
        )
        current = aliases(client, name).get(CHAMPION)
        if current == to and kind == PROMOTION:
            # A retry of a move that went through: done already, and its event was written with it.
            conn.execute(warehouse.events.delete().where(lock))
            return None
        if current != expected:
            conn.execute(warehouse.events.delete().where(lock))
            return (
                f"the champion changed since the decision: it was {_v(expected)}, it is now {_v(current)}; "
                "another promotion or rollback happened in between"
            )
        if previous is None:
            client.delete_registered_model_alias(name, PREVIOUS)
        else:
            client.set_registered_model_alias(name, PREVIOUS, previous)
        # The switch itself: one registry call, scoring sees the old champion or the new one, nothing between.
        client.set_registered_model_alias(name, CHAMPION, to)
        conn.execute(warehouse.events.insert().values(warehouse.event_row(model, kind, payload)))
        conn.execute(warehouse.events.delete().where(lock))
    return None


def _record_refusal(
    registry: _Registry,
    gate: Mapping[str, Any],
    decision: Decision,
    *,
    stage: str,
    airflow_run_id: str | None,
) -> dict[str, Any]:
    payload = {
        "version": gate["challenger_version"],
        "champion_version": gate["champion_version"],
        "run_id": gate["challenger_run_id"],
        "stage": stage,
        "reasons": decision.reasons,
        "airflow_run_id": airflow_run_id,
        "decision": decision.as_dict(),
    }
    # Within one Airflow run a refusal is written once, however often its task is retried.
    key = (
        f"{PROMOTION_REFUSED}:{registry.spec.name}:{airflow_run_id}:{gate['challenger_version']}:{stage}"
        if airflow_run_id
        else None
    )
    warehouse.record_event(registry.engine, registry.spec.name, PROMOTION_REFUSED, payload, dedup_key=key)
    return {
        "model": registry.spec.name,
        "promoted": False,
        "version": gate["challenger_version"],
        "champion": gate["champion_version"],
        "stage": stage,
        "reasons": decision.reasons,
    }


def _log_decision(registry: _Registry, version: str, run_id: str, decision: Decision, outcome: str) -> None:
    """The decision on the challenger's run and version: ``gate/*`` metrics, tags and the full JSON."""
    from mlflow.entities import Metric, RunTag

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
    registry.client.log_batch(run_id, metrics=metrics, tags=tags)
    registry.client.log_dict(
        run_id,
        {"outcome": outcome, "at": _now(), **decision.as_dict()},
        f"gate/{_stamp()}-{outcome.replace(' ', '-')}.json",
    )
    registry.client.set_model_version_tag(registry.name, version, "airloop.gate", outcome)


def _version_run(registry: _Registry, version: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return registry.client.get_model_version(registry.name, version).run_id
    except MlflowException as exc:
        raise PromotionError(f"{registry.name} has no version {version}: {exc.message}") from exc


def _recorded_holdout(registry: _Registry, run_id: str) -> dict[str, list[str]]:
    """The holdout a version was trained against, from its run's ``lineage.json``."""
    import mlflow

    lineage = mlflow.artifacts.load_dict(f"runs:/{run_id}/lineage.json")
    holdout = [p for p in lineage["partitions"] if p["role"] == "holdout"]
    return {"partitions": [p["partition"] for p in holdout], "checksums": [p["checksum"] for p in holdout]}


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
