"""VM detail page and action endpoints: POST + CSRF, confirmations, refusals as messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from jobs import runner
from jobs.choices import JobStatus
from jobs.models import Job
from nodes.hypervisor import close_all
from nodes.models import Node
from tests.support.lifecyclehost import DB1, IMAGES, WEB1, make_lifecycle_node
from vms.choices import JobKind

pytestmark = pytest.mark.django_db

ACTIONS = ["vm_start", "vm_shutdown", "vm_reboot", "vm_force_off", "vm_delete"]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_lifecycle_node(tmp_path)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.mark.parametrize("name", ACTIONS)
def test_get_on_an_action_is_405(admin_client: Client, node: Node, name: str) -> None:
    assert admin_client.get(reverse(f"vms:{name}", args=[WEB1])).status_code == 405
    assert not Job.objects.exists()


def test_actions_need_csrf(node: Node) -> None:
    user = get_user_model().objects.create_user("carol", password="pw-for-tests-only")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("vms:vm_start", args=[DB1])).status_code == 403
    assert not Job.objects.exists()


def test_unknown_vm_is_404(admin_client: Client, node: Node) -> None:
    ghost = "99999999-9999-4999-8999-999999999999"
    assert admin_client.get(reverse("vms:vm_detail", args=[ghost])).status_code == 404
    assert admin_client.post(reverse("vms:vm_start", args=[ghost])).status_code == 404
    assert admin_client.get("/vm/not-a-uuid/").status_code == 404


def test_start_queues_a_job_and_redirects_with_a_message(admin_client: Client, node: Node) -> None:
    response = admin_client.post(reverse("vms:vm_start", args=[DB1]), follow=True)
    job = Job.objects.get()
    assert (job.kind, job.requested_by) == (JobKind.START, "alice")
    assert response.redirect_chain[-1][0] == reverse("vms:vm_detail", args=[DB1])
    assert f"Job #{job.pk} queued: start db1." in _messages(response)


def test_next_must_be_local(admin_client: Client, node: Node) -> None:
    url = reverse("vms:vm_start", args=[DB1])
    response = admin_client.post(url, {"next": "https://evil.example/"})
    assert response["Location"] == reverse("vms:vm_detail", args=[DB1])
    Job.objects.all().delete()
    response = admin_client.post(url, {"next": reverse("vms:vm_list")})
    assert response["Location"] == reverse("vms:vm_list")


def test_conflict_and_refusal_are_messages(admin_client: Client, node: Node) -> None:
    admin_client.post(reverse("vms:vm_shutdown", args=[WEB1]))
    response = admin_client.post(reverse("vms:vm_force_off", args=[WEB1]), follow=True)
    assert any("web1 already has an active job" in m for m in _messages(response))
    response = admin_client.post(reverse("vms:vm_start", args=[WEB1]), follow=True)
    assert "web1 is already running." in _messages(response)
    response = admin_client.post(
        reverse("vms:vm_shutdown", args=[DB1]), {"timeout": "-1"}, follow=True
    )
    assert any("timeout must be a whole number" in m for m in _messages(response))
    assert Job.objects.count() == 1


def test_shutdown_takes_a_timeout(admin_client: Client, node: Node) -> None:
    admin_client.post(reverse("vms:vm_shutdown", args=[WEB1]), {"timeout": "15"})
    assert Job.objects.get().params == {"timeout": 15}


def test_force_off_and_delete_have_confirmation_pages(admin_client: Client, node: Node) -> None:
    page = admin_client.get(reverse("vms:vm_force_off_confirm", args=[WEB1])).content.decode()
    assert "Force off web1?" in page and reverse("vms:vm_force_off", args=[WEB1]) in page
    page = admin_client.get(reverse("vms:vm_delete_confirm", args=[WEB1])).content.decode()
    assert 'name="disk" value="vda"' in page and 'name="disk" value="vdb"' in page
    assert 'value="sda"' not in page  # the CD-ROM is never offered
    assert 'name="force_off"' in page and "checked" not in page  # default: keep disks
    assert not Job.objects.exists()


def test_delete_posts_chosen_disks_and_force_off(admin_client: Client, node: Node) -> None:
    admin_client.post(reverse("vms:vm_delete", args=[WEB1]), {"disk": ["vda"], "force_off": "on"})
    job = Job.objects.get()
    assert job.kind == JobKind.DELETE and job.params["force_off"] is True
    assert [d["target"] for d in job.params["disks"]] == ["vda"]


@pytest.mark.parametrize("disk", ["sda", f"{IMAGES}/db1.qcow2", "../../etc/shadow", "vdq"])
def test_crafted_delete_post_cannot_name_other_volumes(
    admin_client: Client, node: Node, disk: str
) -> None:
    response = admin_client.post(
        reverse("vms:vm_delete", args=[WEB1]), {"disk": [disk], "force_off": "on"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("vms:vm_delete_confirm", args=[WEB1])
    assert any("is not a deletable disk of web1" in m for m in _messages(response))
    assert not Job.objects.exists()


def test_delete_of_a_running_vm_without_force_off_is_refused(
    admin_client: Client, node: Node
) -> None:
    response = admin_client.post(reverse("vms:vm_delete", args=[WEB1]), follow=True)
    assert any("web1 is running: shut it down first" in m for m in _messages(response))
    assert not Job.objects.exists()


def test_detail_page_renders_from_the_database_only(admin_client: Client, node: Node) -> None:
    job = runner.submit(
        JobKind.REBOOT, vm=node.vms.get(uuid=WEB1), target_name="web1", requested_by="bob"
    )
    runner.execute(job.pk)
    # From here on the node cannot be reached: any libvirt call would fail the page.
    close_all()
    Path(node.uri.removeprefix("test://")).unlink()
    page = admin_client.get(reverse("vms:vm_detail", args=[WEB1])).content.decode()
    assert f"{IMAGES}/web1.qcow2" in page and "default/web1-data.img" in page
    assert f"{IMAGES}/debian.iso" in page and "cdrom" in page
    assert "52:54:00:00:00:11" in page and "virtio" in page
    assert "127.0.0.1:auto" in page
    assert f"#{job.pk}" in page and "reboot" in page and "succeeded" in page
    assert reverse("vms:vm_shutdown", args=[WEB1]) in page
    assert 'name="timeout"' in page


def test_detail_offers_force_off_after_an_ignored_shutdown(
    admin_client: Client, node: Node
) -> None:
    vm = node.vms.get(uuid=WEB1)
    Job.objects.create(
        kind=JobKind.SHUTDOWN,
        vm=vm,
        node=node,
        target_name="web1",
        lock_key="x",
        status=JobStatus.FAILED,
        error="VM web1 did not shut down within 1 s",
        progress_detail={"timed_out": True},
    )
    page = admin_client.get(reverse("vms:vm_detail", args=[WEB1])).content.decode()
    assert "did not shut down in time" in page and "Force off web1 now" in page


def test_vm_list_links_to_details_and_shows_actions(admin_client: Client, node: Node) -> None:
    page = admin_client.get(reverse("vms:vm_list")).content.decode()
    assert reverse("vms:vm_detail", args=[WEB1]) in page
    assert reverse("vms:vm_shutdown", args=[WEB1]) in page
    assert reverse("vms:vm_start", args=[DB1]) in page
    assert reverse("vms:vm_start", args=[WEB1]) not in page  # running: no start button
    assert reverse("vms:vm_delete_confirm", args=[DB1]) in page
    assert "<th>Actions</th>" in page
