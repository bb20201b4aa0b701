"""The typed contracts between stages: what one step hands the next (through Airflow's XCom) and what the event
log keeps.

Each is a frozen pydantic model. On the wire (XCom, the event log's JSON) they are plain JSON objects
(:meth:`Contract.to_json`), read back with ``Model.model_validate``: the Airflow UI shows them as they are, and a
key that is missing, misspelt or of the wrong type fails where it is read, naming the field.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """Base of every contract: no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object form (what XCom and the event log store)."""
        return self.model_dump(mode="json")


# -- ingestion ----------------------------------------------------------------------------------------------------


class Verdict(Contract):
    """What validation decided about a landed partition, and the files it was decided on (their checksum)."""

    model: str
    partition: str
    passed: bool
    #: ``None`` when the files could not be read.
    rows: int | None
    checksum: str
    files: list[str]
    validation_result_id: str
    validation_result_path: str | None
    failures: list[str] = Field(default_factory=list)

    @property
    def reason(self) -> str:
        """Every failure in one line; empty when the batch passed."""
        return "; ".join(self.failures)


class Extracted(Contract):
    """A partition read from a SQL source and delivered to the landing folder."""

    model: str
    partition: str
    rows: int
    checksum: str


class Loaded(Contract):
    """A partition written to the warehouse."""

    model: str
    partition: str
    rows: int
    table: str


class Quarantined(Contract):
    """A partition kept as received, out of the warehouse."""

    model: str
    partition: str
    quarantine_path: str
    reason: str
    rows: int | None
    files: list[str]
    checksum: str
    #: Rows of an earlier delivery of the partition that passed and stays loaded (None: there is none).
    still_loaded: int | None = None


# -- training and promotion ---------------------------------------------------------------------------------------


class WindowSpan(Contract):
    first: str
    last: str
    partitions: int


class Holdout(Contract):
    """The partitions a version was judged on, with the batch checksums they had (a reload changes them)."""

    partitions: list[str]
    checksums: list[str]


class Trained(Contract):
    """A registered challenger: its version and run, its data, and its holdout metrics."""

    model: str
    registered_model: str
    version: str
    run_id: str
    experiment_id: str
    window: WindowSpan
    holdout: Holdout
    metrics: dict[str, float]
    best_params: dict[str, Any]
    trials: int
    search_start: str
    seconds: float


class Gate(Contract):
    """The gate's decision about a challenger, with the versions it was made for."""

    model: str
    challenger_version: str
    challenger_run_id: str
    champion_version: str | None
    promote: bool
    reasons: list[str]
    evidence: dict[str, Any]
    #: The gate passed but the policy wants a human's approval first; ``promote`` stays False until then.
    approval_required: bool = False


class PromotionResult(Contract):
    """What came of a promotion attempt: ``version`` replaced ``champion_before``, or did not (``stage`` says
    where it was refused: the gate, a human's approval, or the move itself when the champion had changed)."""

    model: str
    promoted: bool
    version: str
    champion_before: str | None
    forced: bool = False
    stage: Literal["gate", "approval", "move"] | None = None
    reasons: list[str]


class RollbackResult(Contract):
    model: str
    rolled_back: bool
    champion: str
    from_version: str
    reason: str | None


# -- monitoring ---------------------------------------------------------------------------------------------------


class ColumnDrift(Contract):
    """One column's drift as Evidently measured it: ``score`` by ``method`` against ``threshold``."""

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool

    @property
    def severity(self) -> float:
        """How far past its threshold the score is (1: on it), whichever way the method counts.

        Distances (Wasserstein, Jensen-Shannon) drift when the score reaches the threshold, p-values (KS,
        chi-square) when the score falls below it: the ratio in the drifted direction ranks both kinds.
        """
        if self.score == self.threshold:
            return 1.0
        if self.score == 0 or self.threshold == 0:
            return math.inf
        return max(self.score / self.threshold, self.threshold / self.score)


class QualityFigures(Contract):
    """The primary metric on the labelled rows of the window, and the champion's figure on its holdout."""

    metric: str
    higher_is_better: bool
    labelled_rows: int
    current: float | None
    baseline: float | None

    @property
    def drop(self) -> float | None:
        """How much worse than the baseline the current figure is (negative: better); None if not known."""
        if self.current is None or self.baseline is None:
            return None
        worse = self.baseline - self.current
        return worse if self.higher_is_better else -worse


class MonitoredWindow(Contract):
    first: str
    last: str
    #: The end of the run's data interval (ISO): labels must have arrived by then.
    end: str | None = None

    @property
    def label(self) -> str:
        return f"{self.first}..{self.last}"


class RowCounts(Contract):
    current: int
    reference: int
    labelled: int
    sampled_current: int
    stale_partitions: list[str]


class DriftSummary(Contract):
    share: float | None
    drifted_features: int
    features: int
    threshold_share: float
    #: The most drifted features, most severe first.
    top: list[ColumnDrift]


class QualitySummary(Contract):
    metric: str
    higher_is_better: bool
    labelled_rows: int
    current: float | None
    baseline: float | None
    drop: float | None


class MonitorResult(Contract):
    """What a monitor run found for its window: the outcome, the figures, and where the evidence is.

    ``monitored`` is False (with ``reason``) when there was nothing to monitor (no champion yet); every figure is
    then empty.
    """

    model: str
    window: MonitoredWindow
    monitored: bool
    reason: str | None = None
    champion_version: str | None = None
    outcome: Literal["drift", "no drift", "no decision"] | None = None
    drifted: bool = False
    decided: bool = False
    reasons: list[str] = Field(default_factory=list)
    rows: RowCounts | None = None
    drift: DriftSummary | None = None
    prediction: ColumnDrift | None = None
    quality: QualitySummary | None = None
    report_path: str | None = None
    report_url: str | None = None
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    monitoring_id: int | None = None
    seconds: float | None = None


class DriftRecorded(Contract):
    """A drift event in the event log (the drift Asset's extra)."""

    model: str
    window: str
    event_id: int
    dedup_key: str
    #: False when this window's event was written before (a re-run of the monitor).
    new: bool
    drift_share: float | None
    quality_drop: float | None
    report_path: str | None
    mlflow_run_url: str | None


# -- retraining ---------------------------------------------------------------------------------------------------


class RetrainDue(Contract):
    """A retrain to run (the retrain sensor's XCom): up to ``partition``, handling drift event ``id`` (and every
    older pending one), or, when ``id`` is None, on the champion's age."""

    id: int | None
    partition: str
    window: str
    drift_share: float | None
    why: str
    age_due: bool = False
    champion_age_days: float | None = None
    max_champion_age_days: float | None = None


class RetrainOutcome(Contract):
    """What a retrain's training run decided (from the event log)."""

    model: str
    outcome: Literal["promoted", "champion kept", "retrain failed"]
    version: str | None
    champion_before: str | None
    reasons: list[str]
    drift_event_id: int | None
    window: str
    train_run_id: str
    handled_events: list[int] = Field(default_factory=list)


class Scored(Contract):
    """What a score run stored (``scored`` False with ``reason`` when there was nothing to do)."""

    model: str
    alias: str
    scored: bool
    reason: str | None = None
    version: str | None = None
    partitions: dict[str, int] = Field(default_factory=dict)
    rows: int = 0
    table: str | None = None
