"""The dashboards in a real browser: headless Chromium on the Prefect UI and the MLflow UI.

Uses the servers of tests/servers.py (basic auth on both). The Prefect UI asks for the auth string in
its login form (it keeps it, base64-encoded, in localStorage `prefect-password` and sends it as a
Basic Authorization header); the MLflow UI gets the Basic header through the DevTools protocol.
Screenshots land in docs/screenshots/ for the README.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from servers import REPO, Stack, basic_auth_header, shared_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "docs" / "screenshots"
WAIT_SECONDS = 60

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: install the Debian packages chromium and chromium-driver "
        "(.ci/run does)",
    ),
]


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, bike_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    return shared_stack(request, bike_frame, tmp_path_factory)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), f"{CHROMEDRIVER} is missing: install the Debian package chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,1250",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver: Any, *patterns: str, what: str) -> str:
    """The page text once every regex in `patterns` is on the page (fails with the text otherwise)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.5).until(
            lambda d: all(re.search(p, page_text(d)) for p in patterns)
        )
    except TimeoutException:
        shown = page_text(driver)[:2000]
        pytest.fail(f"{what}: {patterns} not shown at {driver.current_url}; the page says:\n{shown}")
    return page_text(driver)


def prefect_login(stack: Stack, browser: Any, path: str, shown: str) -> None:
    """Log in through the Prefect UI's form, redirected to `path`, which then shows `shown`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{stack.prefect_url}/login?redirect={path}")
    field = WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "form input[type=password]")
    )
    field.send_keys(stack.prefect_auth)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_text(browser, re.escape(shown), what="Prefect UI after login")


def test_prefect_ui_shows_the_completed_scheduled_run(stack: Stack, browser: Any) -> None:
    run = stack.scheduled_run()
    assert run.state.is_completed()
    path = f"/runs/flow-run/{run.id}"
    # Not logged in: the UI's API calls are refused and it says so, without showing the run.
    browser.get(f"{stack.prefect_url}{path}")
    text = wait_for_text(browser, r"Authentication failed", what="Prefect UI before login")
    assert run.name not in text
    prefect_login(stack, browser, path, run.name)
    stored = browser.execute_script("return window.localStorage.getItem('prefect-password')")
    assert base64.b64decode(stored).decode() == stack.prefect_auth
    # A fresh load of the page, logged in: no leftovers of the pre-login requests.
    browser.get(f"{stack.prefect_url}{path}")
    text = wait_for_text(
        browser,
        re.escape(run.name),
        r"\bCompleted\b",
        r"\d+ Task runs",
        re.escape(stack.deployments["scheduled"]),
        what="flow-run page",
    )
    assert "Login" not in text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "prefect-flow-run.png"))


def test_mlflow_ui_shows_the_model_and_its_champion_alias(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    with stack.mlflow() as client:
        champion = client.get_model_version_by_alias(stack.name, "champion")
    mlflow_login(stack, browser)
    browser.get(f"{stack.mlflow_url}/#/models/{stack.name}")
    text = wait_for_text(
        browser,
        rf"(?m)^{re.escape(stack.name)}$",
        rf"Version {champion.version}\b",
        r"@\s*champion",
        what="MLflow registered-model page",
    )
    assert "Registered Models" in text
    rows = {
        row.text.split("\n", 1)[0]: row.text for row in browser.find_elements(By.CSS_SELECTOR, "[role=row]")
    }
    assert re.search(r"@\s*champion", rows[f"Version {champion.version}"]), rows
    assert [label for label, row in rows.items() if re.search(r"@\s*champion\b", row)] == [
        f"Version {champion.version}"
    ]
    close_side_panels(browser)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "mlflow-model.png"))


def mlflow_login(stack: Stack, browser: Any) -> None:
    """Send the MLflow admin's Basic header with every request of the browser."""
    header = basic_auth_header(f"{stack.mlflow_user}:{stack.mlflow_password}")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": header})


def close_side_panels(browser: Any) -> None:
    """Close the assistant side panel, which covers part of the page, when it is there."""
    from selenium.webdriver.common.by import By

    for button in browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


def test_mlflow_ui_opens_the_experiment_on_model_training_with_source_user_and_dataset(
    stack: Stack, browser: Any
) -> None:
    with stack.mlflow() as client:
        experiment = client.get_experiment_by_name(stack.name)
        runs = client.search_runs([experiment.experiment_id], "tags.prefect_flow_run_id != ''")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert all(run.data.tags["mlflow.source.name"] and run.inputs.dataset_inputs for run in runs)
    mlflow_login(stack, browser)
    # The link the pipeline's Prefect artifacts use: the model-training view, not GenAI's overview.
    browser.get(
        f"{stack.mlflow_url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    )
    text = wait_for_text(
        browser,
        r"retrain-" + re.escape(stack.name),
        r"Dataset",
        r"prefect flow retrain",
        what="MLflow experiment runs",
    )
    # The training data as a dataset input (name, digest, context) and the source tag in the table
    (champion_run,) = [run for run in runs if run.info.run_id == stack.champion["mlflow_run_id"]]
    digest = champion_run.inputs.dataset_inputs[0].dataset.digest
    assert re.search(rf"y2011\.csv \({digest}\)\s+Training", text), text[:3000]
    assert "Model training" in text and "Evaluation runs" not in text
    close_side_panels(browser)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "mlflow-experiment.png"))


def test_prefect_ui_shows_the_decision_with_mlflow_links(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    run = stack.scheduled_run()
    with stack.prefect() as client:
        artifacts = client.read_artifacts()
    decision = [a for a in artifacts if a.flow_run_id == run.id and a.key == f"{stack.name}-decision"]
    assert decision and f"[MLflow run]({stack.mlflow_url}/#/experiments/" in decision[0].data
    prefect_login(stack, browser, f"/runs/flow-run/{run.id}", run.name)
    browser.get(f"{stack.prefect_url}/artifacts/artifact/{decision[0].id}")
    wait_for_text(
        browser,
        r"MLflow run",
        r"Model version \d+",
        r"version \d+: (promoted to champion|not promoted)",
        what="decision artifact",
    )
    links = [
        a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='workflowType']")
    ]
    assert any("/runs/" in link for link in links) and any("/models/" in link for link in links), links
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "prefect-artifacts.png"))
