"""Evidently's reports of a monitor run, and the one HTML page that holds them.

Drift (every feature and the prediction, by the policy's methods and thresholds), a data-quality summary, and the
model's quality on labelled rows (the kind of model says how: :meth:`airloop.model.task.Task.quality_report_items`).
Evidently is imported when called; what is read back from its snapshots is :mod:`airloop.vendor.evidently`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airloop.core.files import write_text
from airloop.core.spec import MonitoringSpec
from airloop.model.task import PREDICTION, Task
from airloop.vendor.evidently import safe_report_html

if TYPE_CHECKING:
    import pandas as pd
    from evidently import Report
    from evidently.core.report import Snapshot


def drift_report(
    policy: MonitoringSpec,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
    prediction_numeric: bool = True,
) -> Report:
    """Evidently's drift report: every feature (and ``prediction``, a number or a class) with the policy's methods
    and thresholds, and the drifted share. Each column's verdict comes as a test, so the report includes tests."""
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    items: list[Any] = [
        DataDriftPreset(
            columns=[*numeric, *categorical],
            drift_share=policy.drift_share,
            num_method=policy.num_method,
            cat_method=policy.cat_method,
            threshold=policy.column_threshold,
        )
    ]
    if prediction is not None:
        items.append(
            ValueDrift(column=prediction, method=policy.num_method, threshold=policy.column_threshold)
        )
    return Report(items, include_tests=True)


def drift_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    policy: MonitoringSpec,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
    prediction_numeric: bool = True,
) -> Snapshot:
    """Run :func:`drift_report` on two frames holding the features (and ``prediction``)."""
    from evidently import Dataset

    definition = _definition(numeric, categorical, prediction, prediction_numeric)
    return drift_report(policy, numeric, categorical, prediction, prediction_numeric).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def summary_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
    prediction_numeric: bool = True,
) -> Snapshot:
    """Evidently's data-quality summary of both frames: rows, columns, duplicated and empty rows and columns,
    missing values overall and per column.

    Evidently's ``DatasetStats`` plus ``MissingValueCount`` per column, not ``DataSummaryPreset``: the preset adds a
    plotted distribution of every column, which the drift section shows already, and took 60 % of a monitor run
    (5 of 8 s). A report of its own, without tests: the default tests hold every statistic to the reference's
    ±10 %, noise next to the drift verdicts.
    """
    from evidently import Dataset, Report
    from evidently.metrics import MissingValueCount
    from evidently.presets import DatasetStats

    definition = _definition(numeric, categorical, prediction, prediction_numeric)
    columns = [*numeric, *categorical, *([prediction] if prediction else [])]
    items = [DatasetStats(include_tests=False), *(MissingValueCount(column=c, tests=[]) for c in columns)]
    return Report(items, include_tests=False).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def quality_snapshot(task: Task, reference: pd.DataFrame, current: pd.DataFrame) -> Snapshot:
    """Evidently's quality report of the model's kind on frames of labels and predictions (see
    :meth:`airloop.model.task.Task.quality_frame`)."""
    from evidently import DataDefinition, Dataset, Report

    definition, items = task.quality_report_items()
    data = DataDefinition(**definition)
    return Report(items).run(
        Dataset.from_pandas(current, data_definition=data),
        Dataset.from_pandas(reference, data_definition=data),
    )


#: Sizes each report frame to its content. Evidently's own resize script, made for notebooks, runs before its
#: frame exists when the page is read from a file, which would leave every frame 150 pixels tall.
_FIT_FRAMES = """<script>
document.querySelectorAll("iframe.evidently-ui-iframe").forEach(function (frame) {
  function fit() {
    var body = frame.contentWindow && frame.contentWindow.document.body;
    if (body && body.scrollHeight) { frame.height = body.scrollHeight + 3; }
  }
  frame.addEventListener("load", function () {
    fit();
    new ResizeObserver(fit).observe(frame.contentWindow.document.body);
  });
  fit();
});
</script>"""


def write_report_page(
    path: Path, title: str, facts: Sequence[tuple[str, str]], sections: Sequence[tuple[str, Snapshot]]
) -> Path:
    """One self-contained HTML page: a summary table, then each Evidently snapshot in its own frame; written
    atomically, so a reader (the UI, an alert's link) never sees half a page."""
    esc = html.escape
    rows = "".join(
        f'<tr><th>{esc(label)}</th><td style="white-space:pre-wrap">{esc(value)}</td></tr>'
        for label, value in facts
    )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}th{text-align:left;padding-right:1em;vertical-align:top}"
        "iframe{width:100%;border:0}</style></head><body>",
        f"<h1>{esc(title)}</h1><table>{rows}</table>",
    ]
    for heading, snapshot in sections:
        parts += [f"<h2>{esc(heading)}</h2>", safe_report_html(snapshot)]
    parts += [_FIT_FRAMES, "</body></html>"]
    return write_text(path, "\n".join(parts))


def _definition(
    numeric: Sequence[str], categorical: Sequence[str], prediction: str | None, prediction_numeric: bool
) -> Any:
    from evidently import DataDefinition

    extra = [prediction] if prediction else []
    return DataDefinition(
        numerical_columns=[*numeric, *(extra if prediction_numeric else [])],
        categorical_columns=[*categorical, *([] if prediction_numeric else extra)],
    )
