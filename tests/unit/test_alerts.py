"""Alert composition: what a quarantine alert says, and that data in it cannot break e-mail HTML or Slack."""

from __future__ import annotations

import pytest

from airloop.alerts import (
    MAX_FILES_LISTED,
    MAX_SUBJECT_CHARS,
    Alert,
    quarantine_alert,
    retrain_alert,
    unrecorded_champion_alert,
)
from airloop.core.contracts import RetrainOutcome

pytestmark = pytest.mark.unit

LINKS = {
    "Airflow run": "http://localhost:8080/dags/flights_delay_ingest/runs/scheduled__2013-01-05?a=1&b=2",
    "Data Docs": "http://localhost:8080/airloop/data-docs/flights_delay/2013-01-05.html",
}


def _alert(**overrides: object) -> Alert:
    args: dict[str, object] = {
        "model": "flights_delay",
        "partition": "2013-01-05",
        "reason": "column arr_delay: 12 values above max 1800",
        "rows": 812,
        "files": ["part-0.parquet"],
        "quarantine_path": "/data/quarantine/flights_delay/date=2013-01-05",
        "links": LINKS,
    }
    args.update(overrides)
    return quarantine_alert(**args)  # type: ignore[arg-type]


def test_markup_in_the_reason_is_escaped_in_html_and_slack() -> None:
    alert = _alert(reason='column <script>alert("x")</script> & <@channel> failed')
    assert "<script>" not in alert.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;@channel&gt;" in alert.html
    # Slack would turn <@channel> into a mention of everyone.
    assert "<@channel>" not in alert.slack_text
    assert "&lt;@channel&gt; failed" in alert.slack_text
    assert '<script>alert("x")</script>' in alert.text


def test_link_urls_are_escaped_and_only_web_links_are_clickable() -> None:
    alert = _alert(links={"Airflow run": LINKS["Airflow run"], "Evil": "javascript:alert(1)"})
    assert (
        '<a href="http://localhost:8080/dags/flights_delay_ingest/runs/scheduled__2013-01-05?a=1&amp;b=2">'
        in alert.html
    )
    assert 'href="javascript' not in alert.html
    assert "Evil: javascript:alert(1)" in alert.html
    assert "<javascript" not in alert.slack_text


def test_a_multi_line_reason_gives_a_one_line_subject_of_bounded_length() -> None:
    alert = _alert(reason="column dest:\n" + "unexpected value XYZ; " * 30)
    assert "\n" not in alert.subject
    assert len(alert.subject) <= MAX_SUBJECT_CHARS
    assert alert.subject.endswith("…")


def test_unknown_row_count_and_no_files_are_said_plainly() -> None:
    alert = _alert(rows=None, files=[])
    assert "Rows: unknown" in alert.text
    assert "Files: none" in alert.text


def test_a_long_file_list_is_cut_with_a_count_of_the_rest() -> None:
    files = [f"part-{i}.parquet" for i in range(MAX_FILES_LISTED + 5)]
    alert = _alert(files=files)
    assert f"part-{MAX_FILES_LISTED - 1}.parquet and 5 more" in alert.text
    assert f"part-{MAX_FILES_LISTED}.parquet" not in alert.text


def test_template_syntax_in_data_is_kept_verbatim() -> None:
    alert = _alert(reason="column tailnum: value '{{ ds }}' not allowed")
    assert "{{ ds }}" in alert.subject
    assert "{{ ds }}" in alert.html
    assert "{{ ds }}" in alert.slack_text


def test_quarantine_alert_names_model_partition_reason_place_and_links() -> None:
    alert = _alert()
    assert alert.subject == (
        "[airloop] flights_delay: batch 2013-01-05 quarantined: column arr_delay: 12 values above max 1800"
    )
    for body in (alert.text, alert.html, alert.slack_text):
        assert "flights_delay" in body
        assert "2013-01-05" in body
        assert "column arr_delay: 12 values above max 1800" in body
        assert "/data/quarantine/flights_delay/date=2013-01-05" in body
        assert "part-0.parquet" in body
        assert "812" in body
    assert (
        '<a href="http://localhost:8080/airloop/data-docs/flights_delay/2013-01-05.html">Data Docs</a>'
        in alert.html
    )
    assert (
        "<http://localhost:8080/airloop/data-docs/flights_delay/2013-01-05.html|Data Docs>"
        in alert.slack_text
    )
    assert f"Airflow run: {LINKS['Airflow run']}" in alert.text


def _outcome(**overrides: object) -> RetrainOutcome:
    outcome = {
        "model": "flights_delay",
        "outcome": "champion kept",
        "version": "4",
        "champion_before": "3",
        "reasons": ["roc_auc margin +0.0004 below 0.002"],
        "window": "2013-07-14..2013-07-20",
        "drift_event_id": 7,
        "train_run_id": "retrain__manual__1",
    }
    outcome.update(overrides)
    return RetrainOutcome.model_validate(outcome)


@pytest.mark.parametrize(
    ("overrides", "subject", "headline"),
    [
        (
            {},
            "retrained, champion kept (drift in 2013-07-14..2013-07-20)",
            "the challenger v4 did not pass the gate, champion v3 stays",
        ),
        (
            {"outcome": "promoted"},
            "retrained, v4 promoted (drift in 2013-07-14..2013-07-20)",
            "version 4 is the new champion",
        ),
        (
            {"outcome": "retrain failed", "version": None},
            "retraining failed (drift in 2013-07-14..2013-07-20)",
            "the drift event stays pending",
        ),
        (
            {"outcome": "promoted", "drift_event_id": None, "reasons": ["champion age 40 days > cap 30"]},
            "retrained, v4 promoted (champion aged, data 2013-07-14..2013-07-20)",
            "retrained on the champion's age (data 2013-07-14..2013-07-20)",
        ),
    ],
)
def test_retrain_alert_says_what_started_it_and_what_came_of_it(overrides, subject, headline) -> None:
    outcome = _outcome(**overrides)
    alert = retrain_alert(outcome, LINKS)
    assert alert.subject == f"[airloop] flights_delay: {subject}"
    assert headline in alert.text and headline in alert.slack_text
    assert all(reason in alert.text for reason in outcome.reasons)


def test_unrecorded_champion_alert_names_both_versions_what_serves_and_the_way_back() -> None:
    alert = unrecorded_champion_alert(
        "m", registry_version="1", recorded_version="3", why="moved by hand", links={"Run": "http://x/r"}
    )
    assert alert.subject == "[airloop] m: champion alias moved outside airloop (to v1)"
    assert "scoring serves v3" in alert.text and "Recorded champion: v3" in alert.text
    assert "set the alias back to v3 in the registry" in alert.text and "moved by hand" in alert.slack_text
    removed = unrecorded_champion_alert("m", registry_version=None, recorded_version="3", why="w", links={})
    assert removed.subject.endswith("(to no version (removed))")
