"""End to end in headless Chromium, through nginx with basic auth (tests/support/deploysite.py).

Debian's chromium and chromedriver (tests/e2e/chrome.py); screenshots go to
test-artifacts/e2e/ (gitignored). The lab-backed VM lifecycle is in test_browser_lab.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.chrome import chromium, login, shot
from tests.support.deploysite import Site

VM_UUID = "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0003"  # browse-me

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.e2e import vmlist  # noqa: E402

ROW = vmlist.row_by_uuid(VM_UUID)


@pytest.fixture
def browser(deployed_site: Site) -> Iterator[object]:
    with chromium() as driver:
        yield driver


def _state_text(driver: object) -> str:
    return vmlist.state(driver, ROW)


def _click_row_button(driver: object, label: str, expect: str) -> None:
    """Click a button in the VM's row and wait until the page it leads to says ``expect``.

    If the click was lost (it landed as the row was being redrawn), load the list
    again and click once more.
    """
    for _attempt in range(3):
        vmlist.click(driver, ROW, button=label)
        try:
            vmlist.wait_for_text(driver, expect)
            return
        except TimeoutException:
            driver.get(driver.current_url)  # type: ignore[attr-defined]
    raise AssertionError(f"clicking {label!r} never led to {expect!r}")


def test_operator_and_admin_drive_a_vm_through_nginx(deployed_site: Site, browser: object) -> None:
    driver = browser
    login(driver, "ada")
    driver.get(deployed_site.url + "/")  # type: ignore[attr-defined]
    assert "Virtual machines" in driver.title  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "whoami").text == "ada"  # type: ignore[attr-defined]
    shot(driver, "01-vm-list")
    assert _state_text(driver) == "shut off"

    # Start: the POST redirects back to the list with the job queued; the state then
    # changes in place, from the poll, with no reload (the marker would vanish).
    _click_row_button(driver, "Start", "queued: start browse-me")
    driver.execute_script("window.__noReload = true;")  # type: ignore[attr-defined]
    shot(driver, "02-start-queued")
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "running")
    assert driver.execute_script("return window.__noReload === true;")  # type: ignore[attr-defined]
    shot(driver, "03-running-without-reload")

    # Stop it (ACPI shutdown) and see it shut off, again without a reload.
    _click_row_button(driver, "Shut down", "queued: shut down browse-me")
    driver.execute_script("window.__noReload = true;")  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "shut off")
    assert driver.execute_script("return window.__noReload === true;")  # type: ignore[attr-defined]
    shot(driver, "04-shut-off")

    # Delete through the confirmation page; the row disappears from the list.
    vmlist.click(driver, ROW, link="Delete…")
    shot(driver, "05-delete-confirm")
    vmlist.submit_confirmation(driver)
    driver.get(deployed_site.url + "/")  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(lambda d: _state_text(d) == "(gone)")
    shot(driver, "06-deleted")

    entries = deployed_site.audit(user="ada", target="browse-me", result="ok")
    assert [e["action"] for e in entries] == ["vm.start", "vm.shutdown", "vm.delete"]


def test_viewer_sees_a_clear_403_page(deployed_site: Site, browser: object) -> None:
    driver = browser
    login(driver, "vic")
    driver.get(deployed_site.url + "/nodes/add/")  # type: ignore[attr-defined]
    text = driver.find_element(By.ID, "forbidden").text  # type: ignore[attr-defined]
    assert "Not allowed" in text and "viewer role" in text
    shot(driver, "07-viewer-403")
