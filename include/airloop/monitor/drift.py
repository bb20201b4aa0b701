"""The drift decision: has the model's world moved? A pure function of the monitoring figures and the policy.

The figures are what one monitoring run measured (:mod:`airloop.monitor.monitor` extracts them from Evidently): the
row counts, one drift score per feature with its method, threshold and verdict, the prediction drift, and the
primary metric on the rows whose labels have arrived next to the champion's holdout figure. The policy is the
spec's ``monitoring`` section.

The checks, in order:

1. **enough rows**: fewer current (or reference) rows than ``min_rows`` means no decision at all: a handful of
   rows proves neither drift nor its absence;
2. **feature drift**: drifted when at least ``drift_share`` of the features drifted (Evidently's rule, counted
   exactly, so a share that sits on the threshold is drift);
3. **quality**: judged only with at least ``min_rows`` labelled rows, a champion holdout figure and a defined
   metric (both classes present); drifted when the metric is worse than the holdout figure by more than
   ``max_quality_drop``.

Prediction drift is reported with the reasons but decides nothing on its own: the policy names features and
quality. Every reason is given, not only the first, and every number behind the verdict is in the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airloop.core.contracts import ColumnDrift, QualityFigures
from airloop.core.spec import MonitoringSpec

#: How many drifted features an alert or a reason names.
TOP_FEATURES = 5


@dataclass(frozen=True)
class DriftFigures:
    """What the decision judges."""

    current_rows: int
    reference_rows: int
    features: Sequence[ColumnDrift] = ()
    prediction: ColumnDrift | None = None
    quality: QualityFigures | None = None

    @property
    def drifted_features(self) -> list[ColumnDrift]:
        """The drifted features, most severe first."""
        return sorted((f for f in self.features if f.drifted), key=lambda f: -f.severity)

    @property
    def drift_share(self) -> float | None:
        """The share of features that drifted; None without drift figures."""
        return len(self.drifted_features) / len(self.features) if self.features else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "features": [f.to_json() for f in self.features],
            "prediction": self.prediction.to_json() if self.prediction else None,
            "quality": self.quality.to_json() if self.quality else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftFigures:
        prediction, quality = data.get("prediction"), data.get("quality")
        return cls(
            current_rows=int(data["current_rows"]),
            reference_rows=int(data["reference_rows"]),
            features=[ColumnDrift.model_validate(f) for f in data.get("features", [])],
            prediction=ColumnDrift.model_validate(prediction) if prediction else None,
            quality=QualityFigures.model_validate(quality) if quality else None,
        )


@dataclass(frozen=True)
class DriftDecision:
    """The verdict, why, and the numbers behind it (JSON-able).

    ``decided`` is False when the figures cannot support a verdict (too few rows); ``drifted`` is then False too.
    """

    drifted: bool
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    decided: bool = True

    @property
    def outcome(self) -> str:
        """``drift``, ``no drift`` or ``no decision``: how the result is shown and tagged."""
        if not self.decided:
            return "no decision"
        return "drift" if self.drifted else "no drift"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def drift_decision(figures: DriftFigures, policy: MonitoringSpec) -> DriftDecision:
    """Decide whether the model has drifted, with every reason and number."""
    evidence: dict[str, Any] = {
        "policy": {
            "drift_share": policy.drift_share,
            "min_rows": policy.min_rows,
            "max_quality_drop": policy.max_quality_drop,
        },
        "current_rows": figures.current_rows,
        "reference_rows": figures.reference_rows,
    }
    too_few = [
        f"only {rows:,} {which} rows (fewer than min_rows {policy.min_rows:,}): no decision"
        for which, rows in (("current", figures.current_rows), ("reference", figures.reference_rows))
        if rows < policy.min_rows
    ]
    if too_few:
        return DriftDecision(False, too_few, evidence, decided=False)
    if not figures.features:
        return DriftDecision(False, ["no feature drift figures: no decision"], evidence, decided=False)

    reasons: list[str] = []
    feature_drift = _feature_drift(figures, policy, evidence, reasons)
    quality_drift = _quality_drift(figures.quality, policy, evidence, reasons)
    if figures.prediction is not None:
        evidence["prediction"] = figures.prediction.to_json()
        p = figures.prediction
        verdict = "drifted" if p.drifted else "did not drift"
        reasons.append(f"predictions {verdict} ({p.method} {p.score:.3f}, threshold {p.threshold:g})")
    return DriftDecision(feature_drift or quality_drift, reasons, evidence)


def _feature_drift(
    figures: DriftFigures, policy: MonitoringSpec, evidence: dict[str, Any], reasons: list[str]
) -> bool:
    drifted = figures.drifted_features
    total = len(figures.features)
    # Counted, not compared as floats: 3 of 10 against a share of 0.3 is drift, whatever 3/10 rounds to.
    needed = math.ceil(round(policy.drift_share * total, 9))
    evidence.update(
        {
            "features": total,
            "drifted_features": len(drifted),
            "drift_share": len(drifted) / total,
            "features_needed": needed,
            "top_features": [f.to_json() for f in drifted[:TOP_FEATURES]],
        }
    )
    named = ", ".join(f"{f.column} {f.score:.3f}" for f in drifted[:TOP_FEATURES])
    counted = f"{len(drifted)} of {total} features drifted ({len(drifted) / total:.0%})"
    if len(drifted) >= needed:
        reasons.append(f"{counted}, at least {policy.drift_share:.0%} is drift: {named}")
        return True
    reasons.append(f"{counted}, below {policy.drift_share:.0%}" + (f": {named}" if drifted else ""))
    return False


def _quality_drift(
    quality: QualityFigures | None, policy: MonitoringSpec, evidence: dict[str, Any], reasons: list[str]
) -> bool:
    if quality is None:
        reasons.append("quality not judged: no labelled rows")
        return False
    evidence["quality"] = {**quality.to_json(), "drop": quality.drop}
    if quality.labelled_rows < policy.min_rows:
        reasons.append(
            f"quality not judged: only {quality.labelled_rows:,} rows with labels "
            f"(fewer than min_rows {policy.min_rows:,})"
        )
        return False
    if quality.baseline is None:
        reasons.append(f"quality not judged: the champion has no holdout {quality.metric}")
        return False
    if quality.current is None:
        reasons.append(f"quality not judged: {quality.metric} is undefined on the labelled rows")
        return False
    drop = quality.drop
    assert drop is not None  # both figures are known here
    figures = (
        f"{quality.metric} {quality.current:.4f} on {quality.labelled_rows:,} labelled rows "
        f"vs {quality.baseline:.4f} on the champion's holdout"
    )
    if drop > policy.max_quality_drop:
        reasons.append(f"quality dropped by {drop:.4f} (more than {policy.max_quality_drop:g}): {figures}")
        return True
    reasons.append(f"quality held (drop {drop:.4f}, at most {policy.max_quality_drop:g}): {figures}")
    return False
