"""The UIs in headless Chromium (Debian's package, driven by Playwright), on the e2e stack."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import OPERATOR, ROLES_DAG_ID, VIEWER

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: Chromium's own background connections would only fail, many at a time.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


def _login(page, stack, password: str, username: str | None = None) -> None:
    """Fill in and submit Airflow's login form (the FAB auth manager's)."""
    page.goto(stack.base_url + "/auth/login/", wait_until="networkidle")
    page.fill("input[name=username]", username or stack.username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")


def _logged_in(page, stack, username: str, password: str) -> None:
    """Log in and fail the test unless the UI let us in, with the session's token set."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    _login(page, stack, password, username)
    try:
        page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(
            f"login as {username} did not complete: still on {page.url}; the page says: {_page_error(page)}"
        )
    assert [c for c in page.context.cookies() if c["name"] == "_token"], page.context.cookies()


def _page_error(page) -> str:
    """The page's text, once it shows an HTTP error (Airflow's pages show the status, e.g. "401 Unauthorized
    Invalid credentials") or after 5 s: for failure messages."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:  # an answer that just came may not be rendered yet
        page.get_by_text(re.compile(r"\b[45]\d\d\b")).first.wait_for(timeout=5_000)
    except PlaywrightTimeout:
        pass
    return " ".join(page.locator("body").inner_text().split())[:800]


def _wait_visible(page, text: str, timeout: float) -> None:
    """Wait for ``text`` on the page; fail with the page's address and error when it does not appear."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f"text={text}", timeout=timeout)
    except PlaywrightTimeout:
        pytest.fail(
            f"{text!r} not shown after {timeout / 1000:.0f} s on {page.url}; the page says: {_page_error(page)}"
        )


def test_airflow_ui_sends_an_anonymous_visitor_to_the_login_form(stack, browser):
    page = browser.new_page()
    page.goto(stack.base_url + "/dags", wait_until="domcontentloaded")
    page.wait_for_url(lambda url: "/auth/login" in url, timeout=30_000)
    assert page.locator("input[name=password]").is_visible()
    page.close()


def test_airflow_ui_refuses_a_wrong_password(stack, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    _login(page, stack, "not-the-password")
    # The form shows the server's refusal and stays: no token, no way in.
    expect(page.get_by_text("Invalid login")).to_be_visible(timeout=10_000)
    assert "/auth/login" in page.url
    expect(page.locator("input[name=password]")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "_token"]
    page.close()


def test_airflow_ui_lists_airloops_dags_after_login(stack, browser, tmp_path):
    page = browser.new_page()
    _logged_in(page, stack, stack.username, stack.password)
    # The UI shows what only a logged-in user sees: airloop's DAGs, then one DAG's tasks.
    page.goto(stack.base_url + "/dags", wait_until="networkidle")
    assert "/auth/login" not in page.url, f"sent back to the login form: {page.url}"
    for stage in ("ingest", "train", "score", "monitor", "retrain"):
        _wait_visible(page, f"flights_delay_{stage}", timeout=60_000)
    page.goto(stack.base_url + "/dags/flights_delay_ingest", wait_until="networkidle")
    for task in ("wait_for_partition", "ingest_batch", "quarantine_batch", "alert_quarantine"):
        _wait_visible(page, task, timeout=30_000)
    page.screenshot(path=str(tmp_path / "airflow.png"), full_page=True)
    page.close()


def test_mlflow_ui_asks_for_a_login_and_shows_the_experiments_to_a_person(stack, browser):
    from playwright.sync_api import Error as PlaywrightError

    anonymous = browser.new_page()
    # Headless Chromium has no one to ask for the Basic login the server demands: the page does not load.
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anonymous.goto(stack.mlflow_url + "/#/experiments", wait_until="domcontentloaded", timeout=60_000)
    assert anonymous.request.get(stack.mlflow_url + "/").status == 401
    anonymous.close()
    # A person's login is their Airflow one (read-only in MLflow).
    context = browser.new_context(http_credentials={"username": stack.username, "password": stack.password})
    page = context.new_page()
    # MLflow's UI polls its server: "network idle" may never come, so wait for what it renders instead.
    page.goto(stack.mlflow_url + "/#/experiments", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector("text=Experiments", timeout=60_000)
    assert "MLflow" in page.title()
    context.close()


def _trigger_in_the_ui(page, stack, dag_id: str):
    """Open the DAG's page, press Trigger and confirm in the dialog; the answer to the request the UI made."""
    page.goto(f"{stack.base_url}/dags/{dag_id}", wait_until="networkidle")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=30_000)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith(f"/dags/{dag_id}/dagRuns"),
        timeout=30_000,
    ) as answer:
        dialog.get_by_role("button", name="Trigger", exact=True).last.click()
    return answer.value


def test_a_viewer_is_refused_a_trigger_in_the_ui_and_an_operator_is_not(stack, browser, roles_dag):
    from playwright.sync_api import expect

    runs = f"/api/v2/dags/{ROLES_DAG_ID}/dagRuns"
    before = stack.api("GET", runs)["total_entries"]
    viewer = browser.new_context().new_page()
    _logged_in(viewer, stack, VIEWER, stack.logins[VIEWER])
    # No Admin menu for a viewer (connections, variables, users)...
    expect(viewer.get_by_role("button", name="Browse")).to_be_visible(timeout=30_000)
    expect(viewer.get_by_role("button", name="Admin")).to_have_count(0)
    # ... and a trigger is refused, said so on the page, and makes no run.
    refused = _trigger_in_the_ui(viewer, stack, ROLES_DAG_ID)
    assert refused.status == 403, refused.text()
    expect(viewer.get_by_text("Access Denied")).to_be_visible(timeout=10_000)
    assert stack.api("GET", runs)["total_entries"] == before
    viewer.context.close()

    operator = browser.new_context().new_page()
    _logged_in(operator, stack, OPERATOR, stack.logins[OPERATOR])
    allowed = _trigger_in_the_ui(operator, stack, ROLES_DAG_ID)
    assert allowed.status == 200, allowed.text()
    assert stack.api("GET", runs)["total_entries"] == before + 1
    operator.context.close()
