"""Browser consoles through the manager, on real qemu guests.

The deployed site (nginx basic auth, uwsgi, Celery, the console proxy) manages the
lab's node1 and nat2; nat2 is reached only through its router's port forward, and
its guests' VNC listens on nat2's loopback. Headless Chromium opens each guest's
console page and reads noVNC's canvas; a websocket client checks what the proxy
refuses.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.chrome import chromium, login, shot
from tests.lab import nat
from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.support.deploysite import Browser, Site, run_site, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
websocket = pytest.importorskip("websocket")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

GUESTS = {"node1": "con-n1", "nat2": "con-nat2"}

# Size, non-black pixels and a checksum of noVNC's canvas.
CANVAS_PROBE = """
const canvas = document.querySelector('#console-screen canvas');
if (!canvas || !canvas.width) return null;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let lit = 0, sum = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i] | data[i + 1] | data[i + 2]) lit++;
  sum = (sum * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) >>> 0;
}
return [canvas.width, canvas.height, lit, sum];
"""


def _running(site: Site, name: str) -> bool:
    rows = site.query(
        "SELECT count(*) FROM vms_virtualmachine WHERE name = ? AND state = 'running' "
        "AND vnc_port IS NOT NULL AND vanished_at IS NULL",
        (name,),
    )
    return rows[0][0] == 1


def _uuid(site: Site, name: str) -> str:
    raw = site.query("SELECT uuid FROM vms_virtualmachine WHERE name = ?", (name,))[0][0]
    raw = raw.replace("-", "")
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


@pytest.fixture(scope="module")
def console_site(
    lab: Lab, lab_node: LabNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Site, dict[str, LabNode]]]:
    nat2 = nat.add_nat_node(lab, "nat2")
    nodes = {"node1": lab_node, "nat2": nat2}
    for node_name, guest in GUESTS.items():
        lab.remove_guest(guest, nodes[node_name])
        lab.boot_guest(nodes[node_name], guest, timeout=90, disk_mib=64)
    known_hosts = tmp_path_factory.mktemp("console-ssh") / "known_hosts"
    try:
        with run_site(
            extra_env={
                "KVMMGR_SSH_KEY": str(lab.key_path),
                "KVMMGR_SSH_KNOWN_HOSTS": str(known_hosts),
            },
            node=("node1", lab_node.uri, "--virt-type", "qemu"),
            ready=lambda site: _running(site, GUESTS["node1"]),
        ) as site:
            site.manage("addnode", "nat2", nat2.uri, "--virt-type", "qemu")
            wait_for(lambda: _running(site, GUESTS["nat2"]), 60, "nat2's guest in the inventory")
            yield site, nodes
    finally:
        for node_name, guest in GUESTS.items():
            lab.remove_guest(guest, nodes[node_name])


def _ticket(site: Site, user: str, name: str) -> tuple[Browser, Any]:
    browser = site.browser(user)
    browser.get(f"/vm/{_uuid(site, name)}/console/")
    response = browser.post(f"/vm/{_uuid(site, name)}/console/ticket/")
    return browser, response


def _connect(site: Site, browser: Browser, token: str, origin: str | None = None) -> Any:
    auth = base64.b64encode(f"{browser.user}:{browser.password}".encode()).decode()
    return websocket.create_connection(
        f"ws://127.0.0.1:{site.port}/websockify?token={token}",
        header=[f"Authorization: Basic {auth}"],
        cookie="; ".join(f"{k}={v}" for k, v in browser.cookies.items()),
        origin=origin or f"http://127.0.0.1:{site.port}",
        host=f"127.0.0.1:{site.port}",
        subprotocols=["binary"],
        timeout=20,
    )


def _refused(site: Site, browser: Browser, token: str, origin: str | None = None) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(site, browser, token, origin)
    return refused.value.status_code


@pytest.mark.parametrize("node_name", ["node1", "nat2"])
def test_the_proxy_reaches_the_guests_display_and_refuses_a_second_use(
    console_site: tuple[Site, dict[str, LabNode]], node_name: str
) -> None:
    site, _ = console_site
    browser, response = _ticket(site, "otto", GUESTS[node_name])
    assert response.status == 200, response.body
    token = json.loads(response.body)["token"]
    ws = _connect(site, browser, token)
    try:
        banner = ws.recv()
    finally:
        ws.close()
    assert banner.startswith(b"RFB 003.00"), banner  # QEMU's VNC server, through ssh
    assert _refused(site, browser, token) == 403  # single use
    entries = site.audit(action="vm.console")
    assert any(
        e["actor"] == "otto" and e["target"] == GUESTS[node_name] and "opened" in e["detail"]
        for e in entries
    ), entries


def test_no_token_a_foreign_origin_and_a_viewer_are_refused(
    console_site: tuple[Site, dict[str, LabNode]],
) -> None:
    site, _ = console_site
    browser, response = _ticket(site, "otto", GUESTS["node1"])
    token = json.loads(response.body)["token"]
    assert _refused(site, browser, "") == 403
    assert _refused(site, browser, token, origin="https://evil.example") == 403
    assert _refused(site, browser, token) == 403  # the refused try spent it
    viewer, response = _ticket(site, "vic", GUESTS["node1"])
    assert response.status == 403
    assert viewer.get(f"/vm/{_uuid(site, GUESTS['node1'])}/console/").status == 403


@pytest.fixture
def browser_session(console_site: tuple[Site, dict[str, LabNode]]) -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.mark.parametrize("node_name", ["node1", "nat2"])
def test_the_console_page_shows_the_guests_screen(
    console_site: tuple[Site, dict[str, LabNode]], browser_session: Any, node_name: str
) -> None:
    site, _ = console_site
    driver = browser_session
    login(driver, "otto")
    driver.get(f"{site.url}/vm/{_uuid(site, GUESTS[node_name])}/console/")
    status = driver.find_element(By.ID, "console-status")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Connected" not in status.text:
        if "error" in (status.get_attribute("class") or ""):
            break
        time.sleep(0.2)
    logs = [entry["message"] for entry in driver.get_log("browser")]
    assert "Connected" in status.text, (status.text, logs)
    WebDriverWait(driver, 30).until(lambda d: (d.execute_script(CANVAS_PROBE) or [0, 0, 0])[2] > 0)
    first = driver.execute_script(CANVAS_PROBE)
    width, height, lit, _ = first
    assert width >= 640 and height >= 400 and lit > 0, first
    shot(driver, f"console-{node_name}")
    # The screen is live: it changes (the text cursor blinks) while we watch.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and driver.execute_script(CANVAS_PROBE)[3] == first[3]:
        time.sleep(0.3)
    assert driver.execute_script(CANVAS_PROBE)[3] != first[3], "the console never changed"
    assert not driver.find_element(By.ID, "console-cad").get_attribute("disabled")
    driver.find_element(By.ID, "console-cad").click()  # does not break the session
    time.sleep(1)
    assert "Connected" in status.text
