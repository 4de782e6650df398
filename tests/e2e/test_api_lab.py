"""A live migration driven through the REST API only, on the real lab.

The deployed site (nginx, uwsgi, Celery worker) manages node1; everything else is
API calls with an admin's token: register node2, confirm both host keys, create a
VM from a volume, poll its job, migrate it live to node2, poll, check where it runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.lab.trust import own_fingerprint
from tests.support.deploysite import Browser, Site, run_site

VM = "api-vm1"
VOLUME = "api-vm1-disk"


def _clean(*nodes: LabNode) -> None:
    for node in nodes:
        node.virsh("destroy", VM)
        node.virsh("undefine", VM, "--nvram")
        node.virsh("vol-delete", VOLUME, "--pool", "default")


@pytest.fixture(scope="module")
def api_site(
    lab: Lab, lab_node: LabNode, lab_node2: LabNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    _clean(lab_node, lab_node2)
    lab_node.virsh("vol-create-as", "default", VOLUME, "16M", "--format", "qcow2", check=True)
    known_hosts = tmp_path_factory.mktemp("api-ssh") / "known_hosts"
    try:
        with run_site(
            extra_env={
                "KVMMGR_SSH_KEY": str(lab.key_path),
                "KVMMGR_SSH_KNOWN_HOSTS": str(known_hosts),
            },
            node=("node1", lab_node.uri, "--virt-type", "qemu"),
            ready=lambda site: (
                site.query("SELECT count(*) FROM nodes_node WHERE facts_at IS NOT NULL")[0][0] >= 1
            ),
        ) as site:
            yield site
    finally:
        _clean(lab_node, lab_node2)


class Api:
    def __init__(self, site: Site, key: str) -> None:
        self.http = Browser(site.port)
        self.headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.http.port, timeout=30)
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Host": f"127.0.0.1:{self.http.port}", **self.headers},
        )
        response = conn.getresponse()
        raw = response.read().decode()
        conn.close()
        return response.status, json.loads(raw) if raw else None

    def wait_job(self, url: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.call("GET", url)
            assert status == 200, job
            if job["status"] in ("succeeded", "failed", "aborted"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"{url} not finished within {timeout} s: {job}")

    def wait(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout} s")


def test_create_then_live_migrate_through_the_api_only(
    api_site: Site, lab_node: LabNode, lab_node2: LabNode
) -> None:
    key = api_site.manage("apitoken", "create", "ada", "pipeline").stdout.split()[-1]
    api = Api(api_site, key)

    status, node2 = api.call(
        "POST", "/api/v1/nodes/", {"name": "node2", "uri": lab_node2.uri, "virt_type": "qemu"}
    )
    assert status == 201, node2
    nodes = api.wait(
        "both nodes online with their host keys pinned",
        lambda: [
            body
            for body in (api.call("GET", f"/api/v1/nodes/{n['id']}/")[1]
                         for n in api.call("GET", "/api/v1/nodes/")[1]["results"])
            if body["online"] and body["host_key"]
        ] if all(n["online"] for n in api.call("GET", "/api/v1/nodes/")[1]["results"]) else [],
    )  # fmt: skip
    by_name = {n["name"]: n for n in nodes}
    for name, lab_node_ in (("node1", lab_node), ("node2", lab_node2)):
        # What an admin compares before confirming: the node's own key.
        assert by_name[name]["host_key"] == own_fingerprint(lab_node_)
        status, body = api.call(
            "POST", f"/api/v1/nodes/{by_name[name]['id']}/trust/",
            {"fingerprint": by_name[name]["host_key"]},
        )  # fmt: skip
        assert status == 200 and body["trusted_host_key"] == by_name[name]["host_key"], body

    status, accepted = api.call(
        "POST",
        "/api/v1/vms/",
        {
            "node": "node1", "name": VM, "vcpus": 1, "memory_mib": 128, "media": "import",
            "import_volume": f"default/{VOLUME}", "os_variant": "generic",
        },
    )  # fmt: skip
    assert status == 202, accepted
    job = api.wait_job(accepted["job"], 120)
    assert job["status"] == "succeeded", job
    vm = api.wait(
        "the VM in the inventory, running",
        lambda: next(
            (v for v in api.call("GET", f"/api/v1/vms/?name={VM}")[1]["results"]
             if v["state"] == "running"),
            None,
        ),
    )  # fmt: skip
    assert vm["node"] == "node1"

    status, accepted = api.call(
        "POST", f"/api/v1/vms/{vm['uuid']}/migrate/", {"destination": "node2"}
    )
    assert status == 202, accepted
    job = api.wait_job(accepted["job"] + "?log_offset=0", 300)
    assert job["status"] == "succeeded", job["log"][-3000:]
    assert "--live" in job["command"] and "--copy-storage-all" in job["command"]
    status, moved = api.call("GET", f"/api/v1/vms/{vm['uuid']}/")
    assert status == 200 and moved["node"] == "node2" and moved["state"] == "running", moved
    assert lab_node2.virsh("domstate", VM, check=True).stdout.strip() == "running"
    assert lab_node.virsh("domstate", VM).returncode != 0  # gone from the source
    entries = api_site.audit(action="vm.migrate", user="ada")
    assert entries and entries[-1]["source"].endswith("token:pipeline"), entries
