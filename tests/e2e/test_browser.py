"""The UIs in headless Chromium (Debian's package, driven by Playwright), on the e2e stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: Chromium's own background connections would only fail, many at a time.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} missing: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def _login(page, stack, password: str) -> None:
    page.goto(stack.base_url + "/", wait_until="networkidle")
    page.wait_for_selector("input[name=username]", timeout=30_000)
    page.fill("input[name=username]", stack.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_airflow_ui_refuses_a_wrong_password(stack, browser):
    page = browser.new_page()
    _login(page, stack, "not-the-password")
    page.wait_for_timeout(1500)
    assert "/auth/login" in page.url
    assert page.query_selector("input[name=password]") is not None
    page.close()


def test_airflow_ui_lists_airloops_dags_after_login(stack, browser, tmp_path):
    page = browser.new_page()
    _login(page, stack, stack.password)
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    page.goto(stack.base_url + "/dags", wait_until="networkidle")
    for stage in ("ingest", "train", "score", "monitor", "retrain"):
        page.wait_for_selector(f"text=flights_delay_{stage}", timeout=60_000)
    page.goto(stack.base_url + "/dags/flights_delay_ingest", wait_until="networkidle")
    for task in ("wait_for_partition", "validate_batch", "load_batch", "quarantine_batch"):
        page.wait_for_selector(f"text={task}", timeout=30_000)
    page.screenshot(path=str(tmp_path / "airflow.png"), full_page=True)
    page.close()


def test_mlflow_ui_answers(stack, browser):
    page = browser.new_page()
    # MLflow's UI polls its server: "network idle" may never come, so wait for what it renders instead.
    page.goto(stack.mlflow_url + "/#/experiments", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector("text=Experiments", timeout=60_000)
    assert "MLflow" in page.title()
    page.close()
