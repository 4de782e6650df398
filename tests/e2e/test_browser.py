"""End to end in headless Chromium, through nginx with basic auth (tests/deploysite.py).

Debian's chromium and chromedriver, driven by Selenium with explicit paths, so no
tool ever downloads a browser. Screenshots go to test-artifacts/e2e/ (gitignored).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploysite import ARTIFACTS, USERS, Site

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = ARTIFACTS / "e2e"
VM_UUID = "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0003"  # browse-me

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(deployed_site: Site) -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        reason = "chromium/chromium-driver not installed (deploy/bootstrap.sh test)"
        if os.environ.get("KVMMGR_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="kvmmgr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _login(driver: object, user: str) -> None:
    """Basic auth for every request of the page (navigation, static files, fetch)."""
    token = base64.b64encode(f"{user}:{USERS[user][1]}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})  # type: ignore[attr-defined]
    driver.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )


def _shot(driver: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))  # type: ignore[attr-defined]


def _state_text(driver: object) -> str:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-uuid="{VM_UUID}"] .state')  # type: ignore[attr-defined]
    return rows[0].text if rows else "(gone)"


def test_operator_and_admin_drive_a_vm_through_nginx(deployed_site: Site, browser: object) -> None:
    driver = browser
    _login(driver, "ada")
    driver.get(deployed_site.url + "/")  # type: ignore[attr-defined]
    assert "Virtual machines" in driver.title  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "whoami").text == "ada"  # type: ignore[attr-defined]
    _shot(driver, "01-vm-list")
    assert _state_text(driver) == "shut off"

    # Start: the POST redirects back to the list with the job queued; the state then
    # changes in place, from the poll, with no reload (the marker would vanish).
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-uuid="{VM_UUID}"]')  # type: ignore[attr-defined]
    row.find_element(By.XPATH, ".//button[normalize-space()='Start']").click()
    WebDriverWait(driver, 10).until(lambda d: "queued" in d.find_element(By.TAG_NAME, "body").text)
    driver.execute_script("window.__noReload = true;")  # type: ignore[attr-defined]
    _shot(driver, "02-start-queued")
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "running")
    assert driver.execute_script("return window.__noReload === true;")  # type: ignore[attr-defined]
    _shot(driver, "03-running-without-reload")

    # Stop it (ACPI shutdown) and see it shut off, again without a reload.
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-uuid="{VM_UUID}"]')  # type: ignore[attr-defined]
    row.find_element(By.XPATH, ".//button[normalize-space()='Shut down']").click()
    driver.execute_script("window.__noReload = true;")  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "shut off")
    assert driver.execute_script("return window.__noReload === true;")  # type: ignore[attr-defined]
    _shot(driver, "04-shut-off")

    # Delete through the confirmation page; the row disappears from the list.
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-uuid="{VM_UUID}"]')  # type: ignore[attr-defined]
    row.find_element(By.LINK_TEXT, "Delete…").click()
    _shot(driver, "05-delete-confirm")
    driver.find_element(
        By.CSS_SELECTOR, "form button[type=submit].danger, form button.danger"
    ).click()  # type: ignore[attr-defined]
    driver.get(deployed_site.url + "/")  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "(gone)")
    _shot(driver, "06-deleted")

    entries = deployed_site.audit(user="ada", target="browse-me", result="ok")
    assert [e["action"] for e in entries] == ["vm.start", "vm.shutdown", "vm.delete"]


def test_viewer_sees_a_clear_403_page(deployed_site: Site, browser: object) -> None:
    driver = browser
    _login(driver, "vic")
    driver.get(deployed_site.url + "/nodes/add/")  # type: ignore[attr-defined]
    text = driver.find_element(By.ID, "forbidden").text  # type: ignore[attr-defined]
    assert "Not allowed" in text and "viewer role" in text
    _shot(driver, "07-viewer-403")
