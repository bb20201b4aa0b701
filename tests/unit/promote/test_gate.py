"""The promotion gate on small synthetic holdouts: every way to be refused first, then a clear pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airloop.core.contracts import Gate
from airloop.core.spec import BinaryTarget, PromotionSpec
from airloop.model.task import BinaryClassification
from airloop.promote.gate import (
    Approval,
    Decision,
    PromotionFacts,
    apply_approval,
    decision_markdown,
    paired_bootstrap,
    promotion_decision,
)

pytestmark = pytest.mark.unit

ROWS = 2000
TASK = BinaryClassification(BinaryTarget(column="arr_delay", threshold=15))


def _policy(**overrides) -> PromotionSpec:
    fields = {"metric": "roc_auc", "floor": 0.6, "min_margin": 0.0, "bootstrap": {"samples": 200}}
    return PromotionSpec(**{**fields, **overrides})


def _decide(facts: PromotionFacts, policy: PromotionSpec, *, seed: int = 0) -> Decision:
    """The gate on the policy's metric (the task's default when it names none), as the promotion runs it."""
    return promotion_decision(
        facts, policy, TASK, TASK.metric(policy.metric or TASK.default_metric), seed=seed
    )


class Holdout:
    """Labels, a shared noise and a slice column; models are scores with a chosen signal strength."""

    def __init__(self, seed: int = 0, rows: int = ROWS) -> None:
        self.rng = np.random.default_rng(seed)
        self.y = (self.rng.random(rows) < 0.3).astype(int)
        self.noise = self.rng.normal(size=rows)
        self.group = np.where(self.rng.random(rows) < 0.8, "A", "B")

    def model(self, strength: float, extra_noise: float = 0.0, where: np.ndarray | None = None) -> np.ndarray:
        signal = strength * (self.y - 0.5)
        if where is not None:
            signal = np.where(where, signal, 0.0)
        z = signal + self.noise + extra_noise * self.rng.normal(size=len(self.y))
        return 1 / (1 + np.exp(-z))


@pytest.fixture
def holdout() -> Holdout:
    return Holdout()


def test_below_the_floor_is_refused(holdout):
    coin = holdout.rng.random(ROWS)
    decision = _decide(PromotionFacts(holdout.y, coin), _policy(floor=0.6))
    assert decision.promote is False
    [reason] = decision.reasons
    assert "below the floor 0.6" in reason
    assert decision.evidence["challenger"]["roc_auc"] < 0.6


def test_worse_than_the_champion_is_refused(holdout):
    facts = PromotionFacts(
        holdout.y, holdout.model(1.0), holdout.model(2.0), challenger_version="2", champion_version="1"
    )
    decision = _decide(facts, _policy())
    assert decision.promote is False
    assert any("the challenger is not better" in r for r in decision.reasons)
    assert any("not significant" in r for r in decision.reasons)
    assert decision.evidence["improvement"] < 0
    assert decision.evidence["champion_version"] == "1"


def test_better_by_less_than_the_margin_is_refused(holdout):
    facts = PromotionFacts(holdout.y, holdout.model(1.2), holdout.model(1.0))
    decision = _decide(facts, _policy(min_margin=0.2))
    assert decision.promote is False
    assert any("improves by only" in r and "required margin is 0.2" in r for r in decision.reasons)


def test_better_but_not_significant_is_refused():
    # A slightly stronger signal under independent noise: a positive improvement the bootstrap cannot trust.
    holdout = Holdout(seed=3)
    facts = PromotionFacts(holdout.y, holdout.model(1.04, extra_noise=0.25), holdout.model(1.0))
    decision = _decide(facts, _policy())
    assert decision.evidence["improvement"] > 0
    assert decision.promote is False
    [reason] = decision.reasons
    assert "not significant" in reason
    boot = decision.evidence["bootstrap"]
    assert boot["low"] <= 0 < boot["high"]


def test_a_regressing_slice_is_refused(holdout):
    # Much better on group A (80% of rows), no signal at all on group B.
    challenger = holdout.model(3.0, where=holdout.group == "A")
    facts = PromotionFacts(holdout.y, challenger, holdout.model(1.0), slices={"origin": holdout.group})
    decision = _decide(facts, _policy(max_slice_regression=0.03, min_slice_rows=100))
    assert decision.evidence["improvement"] > 0.05 and decision.evidence["bootstrap"]["low"] > 0
    assert decision.promote is False
    [reason] = decision.reasons
    assert reason.startswith("slice origin=B (")
    assert "more than the allowed 0.03" in reason
    rows = {r["group"]: r for r in decision.evidence["slices"]["origin"]}
    assert rows["A"]["regression"] < 0 < 0.03 < rows["B"]["regression"]


def test_small_slices_are_not_judged(holdout):
    challenger = holdout.model(3.0, where=holdout.group == "A")
    facts = PromotionFacts(holdout.y, challenger, holdout.model(1.0), slices={"origin": holdout.group})
    decision = _decide(facts, _policy(min_slice_rows=1000))
    assert decision.promote is True
    rows = {r["group"]: r for r in decision.evidence["slices"]["origin"]}
    assert rows["B"]["judged"] is False and rows["A"]["judged"] is True


def test_no_champion_yet_promotes_above_the_floor(holdout):
    decision = _decide(PromotionFacts(holdout.y, holdout.model(1.0)), _policy())
    assert decision.promote is True
    assert decision.reasons[-1] == "no champion yet"
    assert decision.evidence["champion"] is None


def test_manual_policy_asks_for_approval_then_a_refusal_stops_it(holdout):
    policy = _policy(approval="manual")
    pending = _decide(PromotionFacts(holdout.y, holdout.model(1.0)), policy)
    assert (pending.promote, pending.approval_required) == (False, True)
    assert "manual approval is required" in pending.reasons[-1]

    refused = _decide(
        PromotionFacts(holdout.y, holdout.model(1.0), approval=Approval(approved=False, by="alice")), policy
    )
    assert (refused.promote, refused.approval_required) == (False, False)
    assert refused.reasons == ["approval refused by alice"]
    assert refused.evidence["approval"] == {"approved": False, "by": "alice"}

    approved = apply_approval(pending, Approval(approved=True, by="bob"))
    assert approved.promote is True and approved.approval_required is False
    assert approved.reasons[-1] == "approved by bob"
    assert not any("manual approval" in r for r in approved.reasons)


def test_approval_never_overrides_a_refusal(holdout):
    coin = holdout.rng.random(ROWS)
    facts = PromotionFacts(holdout.y, coin, approval=Approval(approved=True, by="alice"))
    decision = _decide(facts, _policy(approval="manual"))
    assert decision.promote is False and decision.approval_required is False
    assert apply_approval(decision, Approval(approved=True, by="alice")) == decision


def test_lower_is_better_metrics_flip_floor_and_improvement(holdout):
    policy = _policy(metric="log_loss", floor=0.6)
    better = _decide(PromotionFacts(holdout.y, holdout.model(2.5), holdout.model(1.0)), policy)
    assert better.promote is True, better.reasons
    assert better.evidence["improvement"] > 0
    assert better.evidence["challenger"]["log_loss"] < better.evidence["champion"]["log_loss"]

    worse = _decide(PromotionFacts(holdout.y, holdout.model(1.0), holdout.model(2.5)), policy)
    assert worse.promote is False and worse.evidence["improvement"] < 0

    ceiling = _decide(PromotionFacts(holdout.y, holdout.model(1.0)), _policy(metric="brier", floor=0.1))
    assert ceiling.promote is False
    assert "above the ceiling 0.1" in ceiling.reasons[0]


def test_a_clearly_better_challenger_is_promoted(holdout):
    facts = PromotionFacts(
        holdout.y,
        holdout.model(2.5),
        holdout.model(1.0),
        slices={"origin": holdout.group},
        challenger_version="2",
        champion_version="1",
    )
    decision = _decide(facts, _policy(min_margin=0.01, min_slice_rows=100))
    assert decision.promote is True
    assert decision.approval_required is False
    assert [r.split(":")[0].split(" ")[0] for r in decision.reasons] == [
        "challenger",
        "challenger",
        "the",
        "no",
    ]
    evidence = decision.evidence
    assert evidence["bootstrap"]["low"] > 0.01
    assert evidence["worst_slice_regression"] < 0
    assert set(evidence["challenger"]) == {"roc_auc", "average_precision", "log_loss", "brier"}
    # The decision travels through XCom and the event log as the gate's JSON, and is read back whole.
    gate = Gate(
        model="flights_delay",
        challenger_version="2",
        challenger_run_id="run-2",
        champion_version="1",
        promote=decision.promote,
        reasons=decision.reasons,
        evidence=decision.evidence,
        approval_required=decision.approval_required,
    )
    again = Gate.model_validate(json.loads(json.dumps(gate.to_json())))
    assert Decision.of(again) == decision
    markdown = decision_markdown(again)
    assert "**Challenger v2** vs **champion v1**" in markdown and "| roc_auc (gate) |" in markdown
    assert all(f"- {reason}" in markdown for reason in decision.reasons)


def test_an_undefined_metric_survives_the_trip_to_the_approver(holdout):
    """A holdout of one class leaves AUC undefined (NaN): the decision shown for approval says so, after XCom."""
    one_class = np.zeros(ROWS, dtype=int)
    facts = PromotionFacts(one_class, holdout.model(1.0), challenger_version="2")
    decision = _decide(facts, _policy(metric="log_loss", floor=5.0, approval="manual"))
    assert decision.approval_required and np.isnan(decision.evidence["challenger"]["roc_auc"])
    gate = Gate(
        model="flights_delay",
        challenger_version="2",
        challenger_run_id="run-2",
        champion_version=None,
        promote=decision.promote,
        reasons=decision.reasons,
        evidence=decision.evidence,
        approval_required=True,
    )
    markdown = decision_markdown(Gate.model_validate(json.loads(json.dumps(gate.to_json()))))
    assert "| roc_auc | - | - |" in markdown and "| log_loss (gate) |" in markdown


def test_mismatched_rows_are_an_error(holdout):
    with pytest.raises(ValueError, match="not the same rows"):
        _decide(PromotionFacts(holdout.y, holdout.model(1.0), holdout.model(1.0)[:-1]), _policy())


def test_paired_bootstrap_is_seeded_and_zero_for_identical_models(holdout):
    auc = TASK.metric("roc_auc")
    a, b = holdout.model(1.5), holdout.model(1.0)
    first = paired_bootstrap(holdout.y, a, b, auc, samples=100, confidence=0.9, seed=5)
    assert first == paired_bootstrap(holdout.y, a, b, auc, samples=100, confidence=0.9, seed=5)
    assert first["low"] <= first["mean"] <= first["high"] and first["valid"] == 100
    assert first["low"] > 0  # the stronger model is better on every resample
    same = paired_bootstrap(holdout.y, a, a, auc, samples=100, confidence=0.9)
    assert same["low"] == same["high"] == 0.0


def test_paired_bootstrap_signs_a_loss_so_that_positive_is_better(holdout):
    better, worse = holdout.model(2.5), holdout.model(1.0)
    for name in ("log_loss", "brier"):
        metric = TASK.metric(name)
        assert not metric.higher_is_better
        boot = paired_bootstrap(holdout.y, better, worse, metric, samples=100, confidence=0.9, seed=1)
        assert 0 < boot["low"] <= boot["mean"] <= boot["high"], (name, boot)
        flipped = paired_bootstrap(holdout.y, worse, better, metric, samples=100, confidence=0.9, seed=1)
        assert flipped["high"] < 0, (name, flipped)


def test_resamples_where_the_metric_is_undefined_are_dropped_and_counted():
    # Two positives in 200 rows: some resamples draw none, where AUC is undefined.
    y = np.zeros(200, dtype=int)
    y[[3, 150]] = 1
    scores = np.linspace(0, 1, 200)
    boot = paired_bootstrap(y, scores, scores[::-1], TASK.metric("roc_auc"), samples=200, confidence=0.9)
    assert boot["samples"] == 200 and 0 < boot["valid"] < 200
    never = paired_bootstrap(
        np.zeros(50), scores[:50], scores[:50], TASK.metric("roc_auc"), samples=60, confidence=0.9
    )
    assert never["valid"] == 0 and np.isnan(never["low"])


def test_the_metric_handed_in_is_the_one_judged(holdout):
    # The policy may name no metric (the task's default then); the gate judges the Metric it is given.
    facts = PromotionFacts(holdout.y, holdout.model(2.5), holdout.model(1.0))
    ap = TASK.metric("average_precision")
    decision = promotion_decision(facts, _policy(metric=None, floor=0.5), TASK, ap)
    assert decision.promote is True, decision.reasons
    assert (decision.evidence["metric"], decision.evidence["higher_is_better"]) == ("average_precision", True)
    assert decision.reasons[0].startswith("challenger average_precision ")
    assert decision.evidence["improvement"] == pytest.approx(
        decision.evidence["challenger"]["average_precision"]
        - decision.evidence["champion"]["average_precision"]
    )
    # The same facts judged on a loss: the floor is a ceiling (the challenger's log loss is about 0.34).
    loss = TASK.metric("log_loss")
    assert promotion_decision(facts, _policy(metric=None, floor=0.4), TASK, loss).promote is True
    refused = promotion_decision(facts, _policy(metric=None, floor=0.3), TASK, loss)
    assert refused.promote is False and refused.evidence["higher_is_better"] is False
    assert (
        refused.reasons[0].startswith("challenger log_loss ")
        and "above the ceiling 0.3" in refused.reasons[0]
    )
