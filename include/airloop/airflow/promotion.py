"""The Airflow side of promotion: the human approval of a promotion the gate passed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from airloop.airflow.dagkit import GATE
from airloop.core.contracts import Gate
from airloop.model.context import ModelContext
from airloop.promote.gate import Approval, decision_markdown
from airloop.promote.promote import record_approval_refusal

#: How long an approval request waits for an answer before it counts as refused. A pending request holds the
#: train DAG's only active run (max_active_runs=1), so it must not wait forever.
APPROVAL_TIMEOUT = timedelta(days=3)


def approval_from_response(response: Mapping[str, Any]) -> Approval:
    """The human's answer from the approval task's result (a HITL response)."""
    user = response.get("responded_by_user") or {}
    by = user.get("name") or user.get("id")
    if by is None:
        by = f"no one (no answer within {APPROVAL_TIMEOUT.days} days)"
    return Approval(approved=list(response.get("chosen_options") or []) == [ApprovalOperator.APPROVE], by=by)


class PromotionApprovalOperator(ApprovalOperator):
    """Asks a human to approve a promotion the gate passed, showing the gate's reasons and numbers.

    "Approve" lets the promotion task run; "Reject" (or no answer within ``response_timeout``) skips it and is
    recorded as a refused promotion, on the challenger's MLflow run and in the event log.
    """

    def __init__(self, *, model: str, gate_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("response_timeout", APPROVAL_TIMEOUT)
        super().__init__(
            subject=f"Promote a new {model} champion?",
            defaults=ApprovalOperator.REJECT,
            **kwargs,
        )
        self.model = model
        self.gate_task_id = gate_task_id

    def execute(self, context: Any) -> Any:
        gate = Gate.model_validate(context["ti"].xcom_pull(task_ids=self.gate_task_id, key=GATE))
        self.subject = f"Promote {self.model} v{gate.challenger_version} to champion?"
        self.body = decision_markdown(gate)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        # Recorded before the parent's handling: on "Reject" it skips the promotion by raising, never returning.
        if "error" not in event and not (approval := approval_from_response(event)).approved:
            gate = Gate.model_validate(context["ti"].xcom_pull(task_ids=self.gate_task_id, key=GATE))
            record_approval_refusal(
                ModelContext.load(self.model), gate, approval, airflow_run_id=context["ti"].run_id
            )
        return super().execute_complete(context=context, event=event)
