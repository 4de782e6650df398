"""Reading and clicking the VM list while it redraws itself.

static/js/vmlist.js replaces the list's rows whenever the inventory changes. An
element Selenium found a moment earlier may then be detached, and Chromium's
driver reports that in several ways: "stale element reference", "no such
element" when searching inside the detached row, or "Node with given id does
not belong to the document". So every read here is a single atomic call (one
XPath from the document root, or one script), and a click that hit a row being
replaced is retried with a fresh lookup; the last attempt's error is raised.
"""

from __future__ import annotations

import time
from typing import Any

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CLICK_ATTEMPTS = 5


def row_by_uuid(uuid: str) -> str:
    return f"//tr[@data-uuid='{uuid}']"


def row_by_name(name: str) -> str:
    return f"//tr[@data-uuid][./td[1]/a[normalize-space()='{name}']]"


def state(driver: Any, row: str) -> str:
    """The row's state text, or "(gone)" when the list has no such row."""
    script = (
        "const hit = document.evaluate(arguments[0], document, null,"
        " XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
        "const cell = hit && hit.querySelector('.state');"
        "return cell ? cell.textContent.trim() : '(gone)';"
    )
    return str(driver.execute_script(script, row))


def page_text(driver: Any) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


def wait_for_text(driver: Any, expect: str, timeout: float = 15) -> None:
    """Wait until the page shows ``expect``; a navigation in between is no error."""
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        lambda d: expect in page_text(d)
    )


def click(driver: Any, row: str, *, button: str | None = None, link: str | None = None) -> None:
    """Click the row's button (or link) with that label, looked up afresh each try."""
    if (button is None) == (link is None):
        raise ValueError("give exactly one of button= or link=")
    tag, label = ("button", button) if button is not None else ("a", link)
    target = f"{row}//{tag}[normalize-space()='{label}']"
    for attempt in range(1, CLICK_ATTEMPTS + 1):
        try:
            driver.find_element(By.XPATH, target).click()
            return
        except WebDriverException:
            if attempt == CLICK_ATTEMPTS:
                raise
            time.sleep(0.2)


def submit_confirmation(driver: Any) -> None:
    """Click a confirmation page's danger button and wait until the POST navigated away.

    A ``driver.get`` issued before that would race (and may cancel) the submission.
    """
    button = driver.find_element(By.CSS_SELECTOR, "form button[type=submit].danger")
    button.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(button))
