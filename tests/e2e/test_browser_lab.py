"""A VM's whole life in headless Chromium, through nginx, on a real libvirtd + qemu node.

libvirt's test driver keeps a virt-install'ed domain only inside virt-install's
process, so creating a VM needs the lab (tests/lab): node1 reached over
qemu+ssh with the lab key, pinned to qemu (TCG). The site's uwsgi and Celery
worker get the key through KVMMGR_SSH_KEY / KVMMGR_SSH_KNOWN_HOSTS. The VM
imports an empty qcow2 volume and has no network: with no OS it sits in the
firmware, which is all start, force off and delete need.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.chrome import chromium, login, shot
from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.support.deploysite import Site, run_site

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from tests.e2e import vmlist  # noqa: E402

VM = "e2e-vm1"
VOLUME = "e2e.qcow2"


def _node_has_facts(site: Site) -> bool:
    return site.query("SELECT count(*) FROM nodes_node WHERE facts_at IS NOT NULL")[0][0] >= 1


def _clean_node(lab_node: LabNode) -> None:
    lab_node.virsh("destroy", VM)
    lab_node.virsh("undefine", VM, "--nvram")
    lab_node.virsh("vol-delete", VOLUME, "--pool", "default")


@pytest.fixture(scope="module")
def lab_site(
    lab: Lab, lab_node: LabNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The deployed site (nginx + uwsgi + Celery) managing the lab's node1."""
    _clean_node(lab_node)
    # The volume exists before the site starts, so the first facts (read once a
    # minute) already list it in the create form.
    lab_node.virsh("vol-create-as", "default", VOLUME, "16M", "--format", "qcow2", check=True)
    known_hosts = tmp_path_factory.mktemp("e2e-ssh") / "known_hosts"
    try:
        with run_site(
            extra_env={
                "KVMMGR_SSH_KEY": str(lab.key_path),
                "KVMMGR_SSH_KNOWN_HOSTS": str(known_hosts),
            },
            node=("node1", lab_node.uri, "--virt-type", "qemu"),
            ready=_node_has_facts,
        ) as site:
            yield site
    finally:
        _clean_node(lab_node)


@pytest.fixture
def browser(lab_site: Site) -> Iterator[Any]:
    with chromium() as driver:
        yield driver


ROW = vmlist.row_by_name(VM)


def _state(driver: Any) -> str:
    return vmlist.state(driver, ROW)


def _job_status(driver: Any) -> str:
    return driver.find_element(By.ID, "job-status").text


def test_admin_creates_starts_stops_and_deletes_a_vm_on_a_real_node(
    lab_site: Site, lab_node: LabNode, browser: Any
) -> None:
    driver = browser
    login(driver, "ada")

    # Create: choose node1, fill the form, follow the job page to success.
    driver.get(lab_site.url + "/create/")
    Select(driver.find_element(By.ID, "id_node")).select_by_visible_text("node1 (online)")
    driver.find_element(By.XPATH, "//button[normalize-space()='Choose']").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "id_name"))
    driver.find_element(By.ID, "id_name").send_keys(VM)
    driver.find_element(By.ID, "id_vcpus").send_keys("1")
    driver.find_element(By.ID, "id_memory_mib").send_keys("128")
    driver.find_element(By.CSS_SELECTOR, "input[name=media][value=import]").click()
    Select(driver.find_element(By.ID, "id_import_volume")).select_by_value(f"default/{VOLUME}")
    Select(driver.find_element(By.ID, "id_network")).select_by_value("")
    shot(driver, "lab-01-create-form")
    driver.find_element(By.XPATH, "//form//button[normalize-space()='Create']").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "job-status"))
    shot(driver, "lab-02-create-job")
    WebDriverWait(driver, 90).until(lambda d: _job_status(d) in ("succeeded", "failed"))
    shot(driver, "lab-03-create-done")
    assert _job_status(driver) == "succeeded", driver.find_element(By.ID, "job-log").text
    assert "virt-install" in driver.find_element(By.ID, "job-command").text
    assert lab_node.virsh("domstate", VM, check=True).stdout.strip() == "running"

    # Its browser console logs in with the VNC password the job set through libvirt
    # (virt-install's command line carried only an expired one-time password).
    raw = lab_site.query("SELECT uuid FROM vms_virtualmachine WHERE name = ?", (VM,))[0][0]
    uuid = str(UUID(hex=str(raw).replace("-", "")))
    driver.get(f"{lab_site.url}/vm/{uuid}/console/")
    WebDriverWait(driver, 30).until(
        lambda d: (
            "Connected" in d.find_element(By.ID, "console-status").text
            or "error" in (d.find_element(By.ID, "console-status").get_attribute("class") or "")
        )
    )
    assert "Connected" in driver.find_element(By.ID, "console-status").text
    shot(driver, "lab-03b-console")

    # The list shows it running; force it off (confirmation page), then see it shut off.
    driver.get(lab_site.url + "/")
    WebDriverWait(driver, 30).until(lambda d: _state(d) == "running")
    shot(driver, "lab-04-listed-running")
    vmlist.click(driver, ROW, link="Force off…")
    vmlist.submit_confirmation(driver)
    driver.get(lab_site.url + "/")
    WebDriverWait(driver, 30).until(lambda d: _state(d) == "shut off")
    shot(driver, "lab-05-forced-off")

    # Start: the state changes in place from the poll, with no reload.
    vmlist.click(driver, ROW, button="Start")
    # The POST navigates back to the list: mark the page only once that one is loaded,
    # else the mark lands on the page being left (seen once in CI).
    vmlist.wait_for_text(driver, f"queued: start {VM}")
    driver.execute_script("window.__noReload = true;")
    WebDriverWait(driver, 60).until(lambda d: _state(d) == "running")
    assert driver.execute_script("return window.__noReload === true;")
    shot(driver, "lab-06-running-without-reload")
    assert lab_node.virsh("domstate", VM, check=True).stdout.strip() == "running"

    # Delete with its disk: force it off in the same step, tick the disk.
    vmlist.click(driver, ROW, link="Delete…")
    for box in driver.find_elements(By.CSS_SELECTOR, "input[type=checkbox]"):
        if not box.is_selected():
            box.click()
    shot(driver, "lab-07-delete-confirm")
    vmlist.submit_confirmation(driver)
    driver.get(lab_site.url + "/")
    WebDriverWait(driver, 60).until(lambda d: _state(d) == "(gone)")
    shot(driver, "lab-08-deleted")
    assert lab_node.virsh("domstate", VM).returncode != 0
    assert lab_node.virsh("vol-info", VOLUME, "--pool", "default").returncode != 0

    actions = [e["action"] for e in lab_site.audit(user="ada", target=VM, result="ok")]
    assert actions[0] == "vm.create" and "vm.start" in actions and actions[-1] == "vm.delete"
