"""What airloop reads from Evidently's snapshots: the ``snapshot.dict()`` form, and its HTML, in one place.

**HTML.** Evidently 0.7 writes a report's data into its page as ``<script> var metric_<id> = <json>; var
additional_graphs_metric_<id> = <json>;\n</script>`` with plain ``json.dumps``, which leaves ``</script>`` inside a
string as it is: a delivered value such as ``</script><img src=x onerror=...>`` (a destination airport, any
free-text column) ends the script there and runs in the browser of whoever opens the report.
:func:`safe_report_html` escapes every ``<`` as ``\\u003c`` inside those data blocks (the same string to
JavaScript, where ``<!--`` would otherwise change where the HTML parser ends the script; JSON has no ``<`` outside
strings, and ``json.dumps`` escapes every newline inside one, so a block ends at the first
newline followed by ``</script>``) and wraps the page in the frame Evidently's ``as_iframe`` makes.

**Snapshots.** Evidently 0.7 lists each metric with its config (``type`` is the metric class's full name, so metrics are found
by the suffix ``:<ClassName>``; a ``ValueDrift`` carries its resolved ``method`` and ``threshold`` there) and its
value; a metric's tests refer to it by ``metric_config.metric_id``. ``tests/unit/vendor/test_vendor.py`` runs real
reports and pins every field read here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airloop.core.contracts import ColumnDrift


@dataclass(frozen=True)
class SnapshotDrift:
    """The drift figures of a report: one per feature, in the order asked, and the prediction's."""

    features: list[ColumnDrift]
    prediction: ColumnDrift | None


#: A data block of Evidently's page: its opening up to the first variable, then everything to the block's end.
_DATA_BLOCK = re.compile(r"(<script>\s*var metric_[0-9a-f]+ = )(.*?)(\n</script>)", re.DOTALL)


def safe_report_html(snapshot: Any) -> str:
    """A snapshot's report as an ``<iframe class="evidently-ui-iframe">`` whose document cannot be broken out of
    by the data it shows (see the module's notes)."""
    page = snapshot.get_html_str(as_iframe=False)
    safe, blocks = _DATA_BLOCK.subn(
        lambda m: m.group(1) + m.group(2).replace("<", "\\u003c") + m.group(3), page
    )
    if blocks == 0:
        raise RuntimeError("Evidently's report page holds no data block where airloop expects one")
    return (
        '<iframe class=\'evidently-ui-iframe\' width="100%" frameborder="0" '
        f'srcdoc="{html.escape(safe, quote=True)}"></iframe>'
    )


def metric_kind(metric: Mapping[str, Any]) -> str:
    """The class name of a metric of ``snapshot.dict()["metrics"]`` (e.g. ``ValueDrift``)."""
    return str(metric["config"]["type"]).rsplit(":", 1)[-1]


def drift_figures(
    snapshot: Mapping[str, Any], features: Sequence[str], prediction: str | None
) -> SnapshotDrift:
    """Every ``ValueDrift`` of a report run with tests: the column, the resolved method and threshold, the score,
    and the verdict (its test FAILed: drifted)."""
    verdicts = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in snapshot.get("tests", [])
        if str(test["metric_config"]["params"]["type"]).endswith(":ValueDrift")
    }
    columns: dict[str, ColumnDrift] = {}
    for metric in snapshot["metrics"]:
        if metric_kind(metric) != "ValueDrift":
            continue
        config = metric["config"]
        if metric["id"] not in verdicts:
            raise ValueError(
                f"drift of {config['column']!r} has no verdict: run the report with include_tests"
            )
        columns[config["column"]] = ColumnDrift(
            column=config["column"],
            method=config["method"],
            score=float(metric["value"]),
            threshold=float(config["threshold"]),
            drifted=verdicts[metric["id"]] == "FAIL",
        )
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(f"the snapshot has no drift figures for {', '.join(missing)}")
    return SnapshotDrift(
        features=[columns[f] for f in features],
        prediction=columns.get(prediction) if prediction else None,
    )


def data_quality(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """Rows, duplicated rows and missing shares (overall and per column) of the current data."""
    quality: dict[str, Any] = {"missing_share": {}}
    for metric in snapshot["metrics"]:
        kind, config, value = metric_kind(metric), metric["config"], metric["value"]
        if kind == "RowCount":
            quality["rows"] = int(value)
        elif kind == "DuplicatedRowCount":
            quality["duplicated_rows"] = int(value)
        elif kind == "DatasetMissingValueCount":
            quality["missing_values_share"] = float(value["share"])
        elif kind == "MissingValueCount":
            quality["missing_share"][config["column"]] = float(value["share"])
    return quality


def single_values(snapshot: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, float]:
    """The values of the report's metrics named in ``names`` (class name -> the name to give); a metric whose
    value is a mean and a spread (``MAE``, ``MeanError``) gives its mean."""
    values = {}
    for metric in snapshot["metrics"]:
        kind = metric_kind(metric)
        if kind in names:
            value = metric["value"]
            values[names[kind]] = float(value["mean"] if isinstance(value, Mapping) else value)
    return values
