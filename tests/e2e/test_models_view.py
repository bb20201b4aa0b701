"""The Models view on the e2e stack: the plugin's app in Airflow's API server, behind Airflow's own login and
roles, listed in the UI's navigation; the page in headless Chromium after a real login."""

from __future__ import annotations

import httpx
import pytest
from conftest import VIEWER
from test_browser import _logged_in, browser  # noqa: F401 - the module's Chromium fixture, shared

from airloop.model.context import load_model_specs

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _models(stack) -> list[str]:
    return sorted(spec.name for spec in load_model_specs(stack.settings.models_dir).specs)


def test_the_models_api_refuses_an_anonymous_caller_and_a_forged_token(stack):
    anonymous = httpx.Client(base_url=stack.base_url, timeout=30)
    for path in ("/airloop/api/models", "/airloop/models"):
        assert anonymous.get(path).status_code == 401, path
    forged = anonymous.get("/airloop/api/models", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code in (401, 403)


def test_the_models_api_lists_every_model_to_the_admin_and_the_viewer(stack):
    expected = _models(stack)
    assert expected, "the e2e stack has models"
    for client in (stack.client, stack.client_as(VIEWER)):
        answer = client.get("/airloop/api/models")
        assert answer.status_code == 200, answer.text
        rows = answer.json()["models"]
        assert [row["model"] for row in rows] == expected
        assert {row["health"] for row in rows} <= {"healthy", "drifting", "failing"}


def test_the_models_view_is_in_the_ui_s_navigation(stack):
    plugins = stack.api("GET", "/api/v2/plugins")["plugins"]
    (airloop,) = [p for p in plugins if p["name"] == "airloop"]
    assert [(v["name"], v["href"]) for v in airloop["external_views"]] == [("Models", "/airloop/models")]


def test_the_models_page_shows_every_model_after_a_login(stack, browser, tmp_path):  # noqa: F811
    page = browser.new_page()
    _logged_in(page, stack, stack.username, stack.password)
    page.goto(stack.base_url + "/airloop/models", wait_until="networkidle")
    rows = page.locator("#models tbody tr[data-model]")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.model)")) == _models(stack)
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
    page.close()
