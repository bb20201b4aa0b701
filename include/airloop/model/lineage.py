"""Lineage: which validated partitions a version was trained on, in which role, and the Airflow run behind it.

Written at training as the run's ``lineage.json`` artifact and ``data.*`` / ``airflow.*`` tags; read back by the
gate (the holdout a version is judged on) and by monitoring (the champion's training rows are its reference).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airloop.core.errors import AirloopError
from airloop.core.spec import ModelSpec
from airloop.core.version import airloop_version, code_version
from airloop.store.ledger import LedgerEntry

if TYPE_CHECKING:
    from mlflow.entities import Run

#: The run artifact holding a version's lineage.
LINEAGE_ARTIFACT = "lineage.json"


class LineageError(AirloopError):
    """A version's lineage cannot be read: it was not trained by airloop, or its run lost the artifact."""


@dataclass(frozen=True)
class TrainingWindow:
    """The partitions a training run uses, oldest first, each with its ledger entry."""

    train: list[str]
    validation: list[str]
    holdout: list[str]
    ledger: dict[str, LedgerEntry]

    @property
    def partitions(self) -> list[str]:
        return [*self.train, *self.validation, *self.holdout]

    @property
    def label(self) -> str:
        """``first..last``: how the window is named in run names, tags and dataset sources."""
        return f"{self.partitions[0]}..{self.partitions[-1]}"

    def roles(self) -> dict[str, list[str]]:
        return {"train": self.train, "validation": self.validation, "holdout": self.holdout}

    def digest(self, partitions: Sequence[str] | None = None) -> str:
        """SHA-256 over each partition's batch checksum and validation result id: the exact data used."""
        lines = [
            f"{p}:{self.ledger[p].checksum}:{self.ledger[p].validation_result_id or ''}"
            for p in (partitions if partitions is not None else self.partitions)
        ]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class Lineage:
    """What a version's training run recorded: its partitions by role, with their checksums."""

    training: list[str]
    holdout: list[str]
    checksums: dict[str, str]


def run_tags(spec: ModelSpec, window: TrainingWindow, airflow: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags that make a training run traceable to its data, code and Airflow run."""
    tags = {
        "airloop.model": spec.name,
        "airloop.role": "training",
        "airloop.version": airloop_version(),
        "airloop.code_version": code_version(),
        "data.partitions": window.label,
        "data.holdout": f"{window.holdout[0]}..{window.holdout[-1]}",
        "data.partition_count": str(len(window.partitions)),
        "data.ledger_digest": window.digest(),
        "data.table": spec.batches_table,
    }
    tags.update(airflow_tags(airflow))
    return tags


def airflow_tags(airflow: Mapping[str, Any] | None) -> dict[str, str]:
    """An Airflow run's identifiers as ``airflow.*`` tags."""
    return {f"airflow.{k}": str(v) for k, v in (airflow or {}).items() if v is not None}


def lineage_record(
    spec: ModelSpec, window: TrainingWindow, airflow: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every partition of the window with its role, checksum, validation result and the run that loaded it."""
    roles = {p: role for role, ps in window.roles().items() for p in ps}
    return {
        "model": spec.name,
        "table": spec.batches_table,
        "ledger_digest": window.digest(),
        "airflow": dict(airflow or {}),
        "partitions": [
            {
                "partition": p,
                "role": roles[p],
                "rows": window.ledger[p].rows,
                "checksum": window.ledger[p].checksum,
                "validation_result_id": window.ledger[p].validation_result_id,
                "loaded_by": window.ledger[p].airflow_run_id,
            }
            for p in window.partitions
        ],
    }


def read_lineage(run: Run) -> Lineage:
    """The lineage a training run recorded (``lineage.json`` among its artifacts)."""
    import mlflow

    try:
        record = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{LINEAGE_ARTIFACT}")
    except Exception as exc:  # any download error means the same: the run holds no usable lineage
        raise LineageError(
            f"run {run.info.run_id} has no {LINEAGE_ARTIFACT}: the data it was trained on is unknown"
        ) from exc
    roles: dict[str, list[str]] = {}
    for item in record["partitions"]:
        roles.setdefault(item["role"], []).append(item["partition"])
    return Lineage(
        training=sorted(roles.get("train", []) + roles.get("validation", [])),
        holdout=sorted(roles.get("holdout", [])),
        checksums={item["partition"]: item["checksum"] for item in record["partitions"]},
    )
