"""The promotion gate: may a challenger replace the champion? A pure function of facts and the spec's policy.

The facts are the holdout labels and the two models' predictions on the SAME rows, so every comparison is paired.
The checks, in order: the absolute floor on the primary metric; with a champion, the required margin, a paired
bootstrap whose lower confidence bound of the improvement must be above zero, and no slice regressing by more than
allowed; with ``approval: manual``, a human's answer. Every failed check is reported, not only the first, and
every number behind the verdict is in ``Decision.evidence``.

The metrics and which way each improves are the kind of model's (:mod:`airloop.model.task`). For a loss lower
is better: the policy's ``floor`` is then a ceiling, and improvements (margin, bootstrap, slice regressions) are
signed so that positive always means "the challenger is better".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airloop.core.contracts import Gate
from airloop.core.spec import PromotionSpec
from airloop.model.task import Metric, Task

if TYPE_CHECKING:
    import numpy as np

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
    def of(cls, gate: Gate) -> Decision:
        """The decision a gate handed on."""
        return cls(
            promote=gate.promote,
            reasons=list(gate.reasons),
            evidence=dict(gate.evidence),
            approval_required=gate.approval_required,
        )


def paired_bootstrap(
    y_true: Any,
    challenger: Any,
    champion: Any,
    metric: Metric,
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
    import numpy as np  # not at import: the approval operator imports this module when a DAG file is parsed

    y = np.asarray(y_true, dtype=np.float64)
    a = np.asarray(challenger, dtype=np.float64)
    b = np.asarray(champion, dtype=np.float64)
    rng = np.random.default_rng(seed)
    improvements = []
    for _ in range(samples):
        rows = rng.integers(0, len(y), len(y))
        difference = metric.improvement(metric.compute(y[rows], a[rows]), metric.compute(y[rows], b[rows]))
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


def promotion_decision(
    facts: PromotionFacts, policy: PromotionSpec, task: Task, metric: Metric, *, seed: int = 0
) -> Decision:
    """Decide whether the challenger replaces the champion on ``metric`` (one of ``task``'s), with every reason
    and number."""
    import numpy as np

    y = np.asarray(facts.y_true, dtype=np.float64)
    challenger = np.asarray(facts.challenger, dtype=np.float64)
    _check_same_rows(y, challenger, "challenger")
    evidence: dict[str, Any] = {
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "rows": len(y),
        "labels": task.label_figures(y),
        "challenger_version": facts.challenger_version,
        "champion_version": facts.champion_version,
        "policy": policy.model_dump(),
        "challenger": task.all_metrics(y, challenger),
    }
    value = evidence["challenger"][metric.name]
    failures: list[str] = []
    passes: list[str] = []

    bound = "floor" if metric.higher_is_better else "ceiling"
    if not np.isfinite(value):
        failures.append(f"challenger {metric.name} is undefined on the holdout ({task.undefined_because})")
    elif metric.clears(value, policy.floor):
        passes.append(f"challenger {metric.name} {value:.4f} clears the {bound} {policy.floor}")
    else:
        side = "below" if metric.higher_is_better else "above"
        failures.append(f"challenger {metric.name} {value:.4f} is {side} the {bound} {policy.floor}")

    if facts.champion is None:
        evidence["champion"] = None
        passes.append("no champion yet")
    else:
        champion = np.asarray(facts.champion, dtype=np.float64)
        _check_same_rows(y, champion, "champion")
        versus = _Versus(y, challenger, champion, task, metric, policy)
        failures += versus.judge(facts.slices, evidence, passes, seed)

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


@dataclass(frozen=True)
class _Versus:
    """The challenger against the champion on the same holdout rows."""

    y: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    task: Task
    metric: Metric
    policy: PromotionSpec

    def judge(
        self, slices: Mapping[str, Any], evidence: dict[str, Any], passes: list[str], seed: int
    ) -> list[str]:
        """The margin, the paired bootstrap and the slices: the failures, with the passes and the evidence added."""
        import numpy as np

        name, policy = self.metric.name, self.policy
        failures: list[str] = []
        evidence["champion"] = self.task.all_metrics(self.y, self.champion)
        ours, theirs = evidence["challenger"][name], evidence["champion"][name]
        improvement = self.metric.improvement(ours, theirs)
        evidence["improvement"] = improvement
        versus = f"challenger {name} {ours:.4f} vs champion {theirs:.4f}"
        if not np.isfinite(improvement) or improvement < policy.min_margin:
            worse = "is not better" if not improvement > 0 else f"improves by only {improvement:+.4f}"
            failures.append(f"{versus}: the challenger {worse}; the required margin is {policy.min_margin}")
        else:
            passes.append(f"{versus}: improvement {improvement:+.4f} meets the margin {policy.min_margin}")

        boot = paired_bootstrap(
            self.y,
            self.challenger,
            self.champion,
            self.metric,
            samples=policy.bootstrap.samples,
            confidence=policy.bootstrap.confidence,
            seed=seed,
        )
        evidence["bootstrap"] = {**boot, "confidence": policy.bootstrap.confidence, "seed": seed}
        interval = f"{policy.bootstrap.confidence:.0%} interval [{boot['low']:+.4f}, {boot['high']:+.4f}]"
        if not boot["low"] > 0:
            failures.append(
                f"the improvement is not significant: paired bootstrap {interval} does not exclude 0"
            )
        else:
            passes.append(f"the improvement is significant: paired bootstrap {interval}")

        evidence["slices"] = {}
        regressions = []
        for column, groups in slices.items():
            rows = self._slice_rows(np.asarray(groups).astype(str))
            evidence["slices"][column] = rows
            for row in rows:
                if row["judged"] and row["regression"] > policy.max_slice_regression:
                    regressions.append(
                        f"slice {column}={row['group']} ({row['rows']} rows): {name} regresses by "
                        f"{row['regression']:.4f} ({row['challenger']:.4f} vs {row['champion']:.4f}), more than "
                        f"the allowed {policy.max_slice_regression}"
                    )
        judged = [r["regression"] for rows in evidence["slices"].values() for r in rows if r["judged"]]
        evidence["worst_slice_regression"] = max(judged) if judged else None
        if slices and not regressions:
            passes.append(
                f"no slice of {', '.join(slices)} regresses by more than {policy.max_slice_regression}"
            )
        return failures + regressions

    def _slice_rows(self, groups: np.ndarray) -> list[dict[str, Any]]:
        import numpy as np

        rows = []
        for group in np.unique(groups):
            mask = groups == group
            count = int(mask.sum())
            row: dict[str, Any] = {"group": str(group), "rows": count, "judged": False}
            if count >= self.policy.min_slice_rows:
                ours = self.metric(self.y[mask], self.challenger[mask])
                theirs = self.metric(self.y[mask], self.champion[mask])
                # A group where the metric is undefined (one class, for AUC) cannot be judged, whatever its size.
                if np.isfinite(ours) and np.isfinite(theirs):
                    regression = self.metric.improvement(theirs, ours)
                    row.update(judged=True, challenger=ours, champion=theirs, regression=regression)
            rows.append(row)
        return rows


def _check_same_rows(y: np.ndarray, score: np.ndarray, name: str) -> None:
    # One prediction per holdout row: a number, or a row of class probabilities.
    if score.shape[:1] != y.shape or score.ndim > 2:
        raise ValueError(
            f"{name} scores have shape {score.shape}, the holdout labels {y.shape}: not the same rows"
        )


def decision_markdown(gate: Gate) -> str:
    """A gate's decision as Markdown, for the human asked to approve it."""
    evidence = gate.evidence
    metric = evidence.get("metric", "")
    lines = [
        f"**Challenger v{gate.challenger_version}** vs **champion {_version(gate.champion_version)}**",
        "",
    ]
    lines += [f"- {reason}" for reason in gate.reasons]
    if metric:
        lines += [
            "",
            f"| metric ({evidence['rows']} holdout rows) | challenger | champion |",
            "|---|---|---|",
        ]
        champion = evidence.get("champion") or {}
        for name, value in evidence["challenger"].items():
            lines.append(
                f"| {name}{' (gate)' if name == metric else ''} | {_figure(value)} | {_figure(champion.get(name))} |"
            )
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    # An undefined metric (NaN) is null once the decision has travelled as JSON (XCom, the event log).
    return "-" if value is None or value != value else f"{value:.4f}"


def _version(version: str | None) -> str:
    return f"v{version}" if version else "(none yet)"
