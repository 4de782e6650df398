from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from kvmmgr.models import AuditEntry
from tests.factories import make_node, make_vm
from vms import vncsecret
from vms.choices import VMState


@pytest.mark.django_db
def test_console_password_is_revealed_by_post_and_audited(admin_client: Client) -> None:
    node = make_node(uri="qemu+ssh://root@127.0.0.1:2222/system")
    vm = make_vm(
        node,
        name="web",
        state=VMState.RUNNING,
        vnc_port=5901,
        vnc_password_sealed=vncsecret.seal("s3cret-pw"),
    )
    detail = admin_client.get(reverse("vms:vm_detail", args=[vm.uuid])).content.decode()
    assert "vnc://127.0.0.1:5901" in detail and "s3cret-pw" not in detail
    url = reverse("vms:vm_console", args=[vm.uuid])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)
    assert response.status_code == 200 and "s3cret-pw" in response.content.decode()
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert AuditEntry.objects.filter(action="vm.console", target="web").exists()


@pytest.mark.django_db
def test_viewers_get_no_console(viewer_client: Client) -> None:
    node = make_node(uri="qemu+ssh://root@127.0.0.1:2222/system")
    vm = make_vm(
        node,
        name="web",
        state=VMState.RUNNING,
        vnc_port=5901,
        vnc_password_sealed=vncsecret.seal("s3cret-pw"),
    )
    listing = viewer_client.get(reverse("vms:vm_list")).content.decode()
    assert "vnc://" not in listing
    response = viewer_client.post(reverse("vms:vm_console", args=[vm.uuid]))
    assert response.status_code == 403 and "s3cret-pw" not in response.content.decode()


@pytest.mark.django_db
def test_stopped_vm_has_no_console(admin_client: Client) -> None:
    vm = make_vm(make_node(), name="off", state=VMState.SHUTOFF)
    response = admin_client.post(reverse("vms:vm_console", args=[vm.uuid]))
    assert response.status_code == 302
