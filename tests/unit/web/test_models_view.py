"""The Models view: the health badge and each model's row (pure), the page (escaped, self-contained) and the app
(who may see which model; a refusal of the login dependency is the app's answer). Airflow's real login and roles
are exercised on the e2e stack (tests/e2e/test_models_view.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from airloop.core.spec import load_spec
from airloop.local.demo.replay import day_frame, write_partition
from airloop.model.context import ModelContext
from airloop.web.app import models_app
from airloop.web.overview import DRIFTING, FAILING, HEALTHY, health, model_row
from airloop.web.pages import models_page

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2013, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


def _status(**changes):
    status = {
        "batches": [{"partition": "2013-06-30", "status": "passed", "rows": 800, "reason": None}],
        "counts": {"passed": 1, "quarantined": 0},
        "history": [
            {
                "at": "2013-05-01T00:00:00+00:00",
                "kind": "promotion",
                "version": "2",
                "forced": False,
                "by": None,
            },
            {"at": "2013-06-01T00:00:00+00:00", "kind": "promotion_refused", "version": "4", "forced": False},
            {
                "at": "2013-06-01T00:00:00+00:00",
                "kind": "promotion",
                "version": "3",
                "forced": False,
                "by": None,
            },
        ],
        "monitoring": {
            "window_first": "2013-06-24",
            "window_last": "2013-06-30",
            "outcome": "no_drift",
            "drifted": False,
            "drift_share": 0.1,
        },
        "open_drift_events": [],
        "undelivered_alerts": [],
    }
    status.update(changes)
    return status


@pytest.mark.parametrize(
    ("changes", "badge", "reason"),
    [
        ({}, HEALTHY, None),
        ({"open_drift_events": [{"id": 4}]}, DRIFTING, "1 drift event(s) not handled"),
        ({"batches": [{"partition": "2013-06-30", "status": "quarantined"}]}, FAILING, "was quarantined"),
        ({"undelivered_alerts": [{"subject": "x"}]}, FAILING, "1 alert(s) not delivered"),
        ({"history": []}, FAILING, "no champion recorded"),
        ({"history": [], "batches": []}, HEALTHY, None),  # nothing ingested yet: nothing to serve
    ],
)
def test_the_health_badge_says_the_worst_and_why(changes, badge, reason):
    verdict = health(_status(**changes))
    assert verdict.badge == badge
    assert (reason is None and not verdict.reasons) or any(reason in r for r in verdict.reasons)


def test_a_failing_model_that_also_drifts_says_both(spec):
    verdict = health(_status(open_drift_events=[{"id": 4}], undelivered_alerts=[{"subject": "x"}]))
    assert verdict.badge == FAILING and len(verdict.reasons) == 2


def test_a_row_holds_the_recorded_champion_and_its_age(spec):
    row = model_row(spec, _status(), NOW)
    assert row["model"] == "flights_delay" and row["kind"] == "binary"
    assert row["champion"] == {
        "version": "3",
        "since": "2013-06-01T00:00:00+00:00",
        "age_days": 30.0,
        "how": "promotion",
        "by": None,
    }
    assert row["refused_promotions"] == 1
    rolled_back = _status(
        history=[*_status()["history"], {"at": None, "kind": "rollback", "version": "2", "by": "otto"}]
    )
    assert model_row(spec, rolled_back, NOW)["champion"]["version"] == "2"
    assert row["last_window"] == {
        "window": "2013-06-24..2013-06-30",
        "outcome": "no_drift",
        "drifted": False,
        "drift_share": 0.1,
    }
    assert (row["health"], row["open_alerts"]) == (HEALTHY, 0)


def test_the_page_escapes_what_comes_from_the_data_and_fetches_nothing(spec):
    reason = "column 'carrier': 1 value(s) not in allowed set, e.g. ['<script>alert(1)</script>']"
    row = model_row(
        spec, _status(batches=[{"partition": "2013-06-30", "status": "quarantined", "reason": reason}]), NOW
    )
    page = models_page([row], errors=["config/models/x.yaml: field 'name': <b>bad</b>"])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>bad</b>" not in page and "&lt;b&gt;bad&lt;/b&gt;" in page
    assert page.count('<tr data-model="') == 1 and 'class="badge failing"' in page
    assert "http" not in page and "<script" not in page  # nothing fetched from elsewhere, no script


def _user(request: Request) -> str:
    """The login dependency of the test: who the request says it is, else Airflow's 401."""
    who = request.headers.get("x-user")
    if who is None:
        raise HTTPException(status_code=401, detail="Not authenticated")
    return who


def test_the_app_refuses_no_login_and_shows_each_user_the_models_they_may_read(airloop_home, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    text = (ROOT / "config" / "models" / "flights_delay.yaml").read_text()
    for name in ("alpha", "beta"):
        (models / f"{name}.yaml").write_text(text.replace("name: flights_delay", f"name: {name}", 1))
    (models / "broken.yaml").write_text("name: broken\n")
    config = airloop_home.__class__(**{**vars(airloop_home), "models_dir": models})
    ctx = ModelContext.load("alpha", config)
    write_partition(day_frame(datetime(2013, 1, 2).date()), ctx.landing, datetime(2013, 1, 2).date())
    from airloop.ingest.ingest import ingest_partition

    assert ingest_partition(ctx, "2013-01-02")[1] is not None
    app = models_app(
        settings=lambda: config, user=_user, may_read=lambda who, model: who == "admin" or model == "beta"
    )
    client = TestClient(app)
    assert client.get("/api/models").status_code == 401
    assert client.get("/models").status_code == 401
    everything = client.get("/api/models", headers={"x-user": "admin"}).json()
    assert [row["model"] for row in everything["models"]] == ["alpha", "beta"]
    alpha = everything["models"][0]
    assert alpha["last_batch"]["partition"] == "2013-01-02" and alpha["batches"] == {
        "passed": 1,
        "quarantined": 0,
    }
    assert any("broken.yaml" in error for error in everything["broken_specs"])
    some = client.get("/api/models", headers={"x-user": "vera"}).json()
    assert [row["model"] for row in some["models"]] == ["beta"]
    page = client.get("/models", headers={"x-user": "vera"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-model="beta"' in page.text and 'data-model="alpha"' not in page.text
