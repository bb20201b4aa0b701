"""The promotion gate: may a challenger replace the champion? A pure function of facts and the spec's policy.

The facts are the holdout labels and the two models' scores on the SAME rows, so every comparison is paired.
The checks, in order: the absolute floor on the primary metric; with a champion, the required margin, a paired
bootstrap whose lower confidence bound of the improvement must be above zero, and no slice regressing by more than
allowed; with ``approval: manual``, a human's answer. Every failed check is reported, not only the first, and
every number behind the verdict is in ``Decision.evidence``.

For losses (``log_loss``, ``brier``) lower is better: the policy's ``floor`` is then a ceiling, and improvements
(margin, bootstrap, slice regressions) are signed so that positive always means "the challenger is better".

Metrics are computed here in numpy (same definitions as scikit-learn's, tested against them) so the gate is
fast enough to bootstrap and has no dependency beyond numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from airloop.spec import PromotionSpec

#: The metrics a policy may name, and whether a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "average_precision": True,
    "log_loss": False,
    "brier": False,
}

_APPROVAL_PENDING = "passes the gate; a manual approval is required before the promotion"


@dataclass(frozen=True)
class Approval:
    """A human's answer to a promotion request."""

    approved: bool
    by: str | None = None


@dataclass(frozen=True)
class PromotionFacts:
    """What the gate judges: labels and both models' probabilities on the same holdout rows."""

    y_true: Any
    challenger: Any
    champion: Any | None = None
    #: Slice column -> the group of each holdout row (same order as ``y_true``).
    slices: Mapping[str, Any] = field(default_factory=dict)
    approval: Approval | None = None
    challenger_version: str | None = None
    champion_version: str | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict, why, and the numbers behind it (JSON-able)."""

    promote: bool
    reasons: list[str]
    evidence: dict[str, Any]
    #: The gate passed but the policy wants a human's approval first; ``promote`` stays False until then.
    approval_required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            promote=bool(data["promote"]),
            reasons=list(data["reasons"]),
            evidence=dict(data["evidence"]),
            approval_required=bool(data.get("approval_required", False)),
        )


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties get average ranks); NaN when only one class is present."""
    positives = int(y_true.sum())
    negatives = len(y_true) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[y_true == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision; NaN without positives."""
    positives = int(y_true.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    sorted_score = score[order]
    # One point per distinct score: tied rows enter the ranking together.
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_score)), len(score) - 1]
    true_positives = np.cumsum(y_true[order])[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mean negative log-likelihood, probabilities clipped away from 0 and 1."""
    eps = np.finfo(np.float64).eps
    p = np.clip(score, eps, 1 - eps)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def brier(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((score - y_true) ** 2))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "average_precision": average_precision,
    "log_loss": log_loss,
    "brier": brier,
}


def metric_value(metric: str, y_true: Any, score: Any) -> float:
    """One of :data:`METRICS` on labels (0/1) and probabilities of the positive class."""
    return METRICS[metric](np.asarray(y_true, dtype=np.float64), np.asarray(score, dtype=np.float64))


def all_metrics(y_true: Any, score: Any) -> dict[str, float]:
    """Every metric of :data:`METRICS`."""
    return {name: metric_value(name, y_true, score) for name in METRICS}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_tie = np.r_[True, ordered[1:] != ordered[:-1]]
    tie_group = np.cumsum(starts_tie) - 1
    starts = np.flatnonzero(starts_tie)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[tie_group]
    return ranks


def paired_bootstrap(
    y_true: Any,
    challenger: Any,
    champion: Any,
    metric: str,
    *,
    samples: int,
    confidence: float,
    seed: int = 0,
) -> dict[str, float | int]:
    """Bootstrap the improvement of challenger over champion, resampling the same rows for both.

    The improvement is signed so that positive is better (champion - challenger for losses). Returns the mean
    improvement and the two-sided ``confidence`` percentile interval ``[low, high]``; resamples where the metric
    is undefined (one class drawn) are dropped and counted.
    """
    y = np.asarray(y_true, dtype=np.float64)
    a = np.asarray(challenger, dtype=np.float64)
    b = np.asarray(champion, dtype=np.float64)
    score = METRICS[metric]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(seed)
    improvements = []
    for _ in range(samples):
        rows = rng.integers(0, len(y), len(y))
        difference = sign * (score(y[rows], a[rows]) - score(y[rows], b[rows]))
        if np.isfinite(difference):
            improvements.append(difference)
    if not improvements:
        return {
            "samples": samples,
            "valid": 0,
            "mean": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
        }
    tail = (1 - confidence) / 2
    low, high = np.quantile(improvements, [tail, 1 - tail])
    return {
        "samples": samples,
        "valid": len(improvements),
        "mean": float(np.mean(improvements)),
        "low": float(low),
        "high": float(high),
    }


def promotion_decision(facts: PromotionFacts, policy: PromotionSpec, *, seed: int = 0) -> Decision:
    """Decide whether the challenger replaces the champion, with every reason and number."""
    metric = policy.metric
    higher = HIGHER_IS_BETTER[metric]
    y = np.asarray(facts.y_true, dtype=np.float64)
    challenger = np.asarray(facts.challenger, dtype=np.float64)
    _check_same_rows(y, challenger, "challenger")
    evidence: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": higher,
        "rows": len(y),
        "positives": int(y.sum()),
        "challenger_version": facts.challenger_version,
        "champion_version": facts.champion_version,
        "policy": policy.model_dump(),
        "challenger": all_metrics(y, challenger),
    }
    value = evidence["challenger"][metric]
    failures: list[str] = []
    passes: list[str] = []

    clears = np.isfinite(value) and (value >= policy.floor if higher else value <= policy.floor)
    bound = "floor" if higher else "ceiling"
    if not np.isfinite(value):
        failures.append(f"challenger {metric} is undefined on the holdout (it holds one class only)")
    elif clears:
        passes.append(f"challenger {metric} {value:.4f} clears the {bound} {policy.floor}")
    else:
        failures.append(
            f"challenger {metric} {value:.4f} is {'below' if higher else 'above'} the {bound} {policy.floor}"
        )

    if facts.champion is None:
        evidence["champion"] = None
        passes.append("no champion yet")
    else:
        champion = np.asarray(facts.champion, dtype=np.float64)
        _check_same_rows(y, champion, "champion")
        failures += _versus_champion(y, challenger, champion, facts.slices, policy, evidence, passes, seed)

    if failures:
        return Decision(promote=False, reasons=failures, evidence=evidence)
    decision = Decision(promote=True, reasons=passes, evidence=evidence)
    if policy.approval == "manual":
        decision = Decision(
            promote=False, reasons=[*passes, _APPROVAL_PENDING], evidence=evidence, approval_required=True
        )
        if facts.approval is not None:
            decision = apply_approval(decision, facts.approval)
    return decision


def apply_approval(decision: Decision, approval: Approval) -> Decision:
    """The decision once a human has answered; a decision that asked for no approval is returned unchanged."""
    if not decision.approval_required:
        return decision
    who = approval.by or "an unnamed user"
    evidence = {**decision.evidence, "approval": {"approved": approval.approved, "by": approval.by}}
    if not approval.approved:
        return Decision(promote=False, reasons=[f"approval refused by {who}"], evidence=evidence)
    reasons = [r for r in decision.reasons if r != _APPROVAL_PENDING]
    return replace(
        decision,
        promote=True,
        approval_required=False,
        reasons=[*reasons, f"approved by {who}"],
        evidence=evidence,
    )


def _versus_champion(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    slices: Mapping[str, Any],
    policy: PromotionSpec,
    evidence: dict[str, Any],
    passes: list[str],
    seed: int,
) -> list[str]:
    metric = policy.metric
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    failures: list[str] = []
    evidence["champion"] = all_metrics(y, champion)
    ours, theirs = evidence["challenger"][metric], evidence["champion"][metric]
    improvement = sign * (ours - theirs)
    evidence["improvement"] = improvement
    versus = f"challenger {metric} {ours:.4f} vs champion {theirs:.4f}"
    if not np.isfinite(improvement) or improvement < policy.min_margin:
        worse = "is not better" if not improvement > 0 else f"improves by only {improvement:+.4f}"
        failures.append(f"{versus}: the challenger {worse}; the required margin is {policy.min_margin}")
    else:
        passes.append(f"{versus}: improvement {improvement:+.4f} meets the margin {policy.min_margin}")

    boot = paired_bootstrap(
        y,
        challenger,
        champion,
        metric,
        samples=policy.bootstrap.samples,
        confidence=policy.bootstrap.confidence,
        seed=seed,
    )
    evidence["bootstrap"] = {**boot, "confidence": policy.bootstrap.confidence, "seed": seed}
    interval = f"{policy.bootstrap.confidence:.0%} interval [{boot['low']:+.4f}, {boot['high']:+.4f}]"
    if not boot["low"] > 0:
        failures.append(f"the improvement is not significant: paired bootstrap {interval} does not exclude 0")
    else:
        passes.append(f"the improvement is significant: paired bootstrap {interval}")

    evidence["slices"] = {}
    regressions = []
    for column, groups in slices.items():
        rows = _slice_rows(y, challenger, champion, np.asarray(groups).astype(str), policy)
        evidence["slices"][column] = rows
        for row in rows:
            if row["judged"] and row["regression"] > policy.max_slice_regression:
                regressions.append(
                    f"slice {column}={row['group']} ({row['rows']} rows): {metric} regresses by "
                    f"{row['regression']:.4f} ({row['challenger']:.4f} vs {row['champion']:.4f}), more than "
                    f"the allowed {policy.max_slice_regression}"
                )
    judged = [r["regression"] for rows in evidence["slices"].values() for r in rows if r["judged"]]
    evidence["worst_slice_regression"] = max(judged) if judged else None
    if slices and not regressions:
        passes.append(f"no slice of {', '.join(slices)} regresses by more than {policy.max_slice_regression}")
    return failures + regressions


def _slice_rows(
    y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, groups: np.ndarray, policy: PromotionSpec
) -> list[dict[str, Any]]:
    sign = 1.0 if HIGHER_IS_BETTER[policy.metric] else -1.0
    rows = []
    for group in np.unique(groups):
        mask = groups == group
        count = int(mask.sum())
        row: dict[str, Any] = {"group": str(group), "rows": count, "judged": False}
        if count >= policy.min_slice_rows:
            ours = metric_value(policy.metric, y[mask], challenger[mask])
            theirs = metric_value(policy.metric, y[mask], champion[mask])
            # A group holding one class has no AUC: it cannot be judged, whatever its size.
            if np.isfinite(ours) and np.isfinite(theirs):
                row.update(judged=True, challenger=ours, champion=theirs, regression=sign * (theirs - ours))
        rows.append(row)
    return rows


def _check_same_rows(y: np.ndarray, score: np.ndarray, name: str) -> None:
    if score.shape != y.shape:
        raise ValueError(
            f"{name} scores have shape {score.shape}, the holdout labels {y.shape}: not the same rows"
        )


def decision_markdown(gate: Mapping[str, Any]) -> str:
    """A decision (``Decision.as_dict()`` plus versions) as Markdown, for the human asked to approve it."""
    evidence = gate["evidence"]
    metric = evidence.get("metric", "")
    lines = [
        f"**Challenger v{gate.get('challenger_version')}** vs **champion {_version(gate.get('champion_version'))}**",
        "",
    ]
    lines += [f"- {reason}" for reason in gate["reasons"]]
    if metric:
        lines += [
            "",
            f"| metric ({evidence['rows']} holdout rows) | challenger | champion |",
            "|---|---|---|",
        ]
        champion = evidence.get("champion") or {}
        for name, value in evidence["challenger"].items():
            theirs = champion.get(name)
            lines.append(
                f"| {name}{' (gate)' if name == metric else ''} | {value:.4f} | "
                f"{'-' if theirs is None else f'{theirs:.4f}'} |"
            )
    return "\n".join(lines)


def _version(version: str | None) -> str:
    return f"v{version}" if version else "(none yet)"
