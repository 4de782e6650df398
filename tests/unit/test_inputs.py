"""One form per action: the page's inputs, the command's flags and the API's fields
all come from the form, and bad input gets the form's words everywhere."""

from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.api import tokens
from kvmmgr.api.serializers import CreateVMSerializer, EvacuateSerializer, MigrateSerializer
from kvmmgr.inputs.api import form_serializer
from kvmmgr.inputs.cli import add_form_arguments, flag_of
from kvmmgr.inputs.fields import Flag, WholeNumber, truthy
from nodes.models import Node
from tests.conftest import make_user
from tests.support.factories import make_node, make_vm
from tests.unit.test_create import form_data, write_create_node
from vms.forms.create import CreateVMForm
from vms.forms.evacuate import EvacuateForm
from vms.forms.migrate import MigrationOptionsForm, migration_options
from vms.services import inventory
from vms.services.migration.options import MigrationOptions

pytestmark = pytest.mark.django_db


def _online(name: str, host: str) -> Node:
    uri = f"qemu+ssh://root@{host}/system"
    return make_node(name=name, uri=uri, last_seen=timezone.now())


def _api() -> APIClient:
    new = tokens.create(Actor.system("admin"), make_user("api-admin", "admin"), "ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {new.key}")
    return client


def _parser(command: str) -> Any:
    return load_command_class("vms", command).create_parser("manage.py", command)


def _option_strings(command: str) -> set[str]:
    return {s for action in _parser(command)._actions for s in action.option_strings}


@pytest.fixture
def create_node(tmp_path: Path) -> Node:
    node = make_node(name="alpha", uri=write_create_node(tmp_path / "alpha.xml"))
    assert inventory.refresh_node(node).ok
    node.refresh_from_db()
    return node


# --- generated from the form ---------------------------------------------------------


def test_migratevm_flags_and_api_fields_are_the_forms() -> None:
    names = set(MigrationOptionsForm.base_fields)
    assert {flag_of(n) for n in names} <= _option_strings("migratevm")
    # the older spellings stay as aliases of the same options
    assert {"--bandwidth", "--max-downtime", "--compress", "--check"} <= _option_strings(
        "migratevm"
    )
    assert set(MigrateSerializer().fields) == {"destination", *names}
    # the form's fields are the job's params: jobs already queued keep working
    assert names == set(asdict(MigrationOptions()))


def test_createvm_flags_and_api_fields_are_the_forms() -> None:
    names = set(CreateVMForm.base_fields)
    assert {flag_of(n) for n in names - {"name"}} <= _option_strings("createvm")
    assert {"--memory", "--disk-size", "--pxe"} <= _option_strings("createvm")
    assert set(CreateVMSerializer().fields) == {"node", *names}


def test_the_api_documents_the_forms_constraints() -> None:
    fields = MigrateSerializer().fields
    assert (fields["max_downtime_ms"].min_value, fields["max_downtime_ms"].max_value) == (
        10,
        60_000,
    )
    assert "zstd" in fields["compression"].choices
    assert CreateVMSerializer().fields["vnc_port"].min_value == 5900


class _Extra(MigrationOptionsForm):
    """The migration form with one more option, as a later change would add it."""

    warmup_s = WholeNumber(noun="Warm-up (s)", label="Warm-up (s)", low=0, high=9, default=0)
    dry_ice = Flag(label="keep it cold")


def test_a_field_added_to_the_form_shows_up_on_the_page_the_cli_and_the_api(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argparse import ArgumentParser

    parser = ArgumentParser()
    add_form_arguments(parser, _Extra)
    assert parser.parse_args(["--warmup-s", "3", "--dry-ice"]).form_warmup_s == "3"
    serializer = form_serializer("ExtraSerializer", _Extra)
    assert {"warmup_s", "dry_ice"} <= set(serializer().fields)
    assert serializer().fields["warmup_s"].max_value == 9

    monkeypatch.setattr("vms.views.migrate.MigrationOptionsForm", _Extra)
    vm = make_vm(_online("n1", "127.0.0.1"), name="web")
    page = admin_client.get(reverse("vms:vm_migrate", args=[vm.uuid])).content.decode()
    assert 'name="warmup_s"' in page and 'name="dry_ice"' in page and "keep it cold" in page
    assert "must be between 0 and 9" in _Extra({"warmup_s": "10"}).errors["warmup_s"][0]


def test_the_pages_keep_the_inputs_the_browser_tests_use(
    admin_client: Client, create_node: Node
) -> None:
    page = admin_client.get(reverse("vms:vm_create") + f"?node={create_node.pk}")
    text = page.content.decode()
    for element_id in ("id_name", "id_vcpus", "id_memory_mib", "id_import_volume", "id_network"):
        assert f'id="{element_id}"' in text
    assert 'name="media" value="import"' in text and 'value="default/base.qcow2"' in text
    assert '<option value="" selected>no network</option>' in text
    assert '<input type="hidden" name="bridge" id="id_bridge">' in text  # set by the CLI/API


# --- the same words everywhere, and nothing queued --------------------------------------


@pytest.mark.parametrize(
    ("field", "flag", "value", "message"),
    [
        ("max_downtime_ms", "--max-downtime", "20", "Max downtime below 50 ms never converges"),
        ("bandwidth_mib_s", "--bandwidth", "lots", "Bandwidth (MiB/s) must be a whole number"),
        ("compression", None, "lz4", "Compression must be one of auto, none"),
        ("stall_timeout_s", "--stall-timeout", "2", "Stall timeout (s) must be between 5"),
    ],
)
def test_bad_migration_options_get_the_same_message_everywhere(
    admin_client: Client, field: str, flag: str | None, value: str, message: str
) -> None:
    source, dest = _online("n1", "127.0.0.1"), _online("n2", "localhost")
    vm = make_vm(source, name="web")
    with pytest.raises(ValidationError) as info:
        migration_options({field: value})
    expected = info.value.message_dict[field]
    assert message in expected[0]

    if flag is not None:  # argparse's own choices refuse a bad --compress first
        with pytest.raises(CommandError) as refused:
            call_command("migratevm", "web", "n2", flag, value)
        assert str(refused.value) == expected[0]
    page = admin_client.post(
        reverse("vms:vm_migrate", args=[vm.uuid]), {"destination": dest.pk, field: value}
    )
    assert page.status_code == 200 and expected[0] in html.unescape(page.content.decode())
    response = _api().post(
        f"/api/v1/vms/{vm.uuid}/migrate/", {"destination": "n2", field: value}, format="json"
    )
    assert response.status_code == 400 and response.json()["fields"] == {field: expected}
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("field", "flag", "value", "message"),
    [
        ("vcpus", "--vcpus", "0", "vCPUs must be at least 1 (got 0)."),
        ("memory_mib", "--memory", "lots", "Memory (MiB) must be a whole number, not 'lots'."),
        ("vnc_port", "--vnc-port", "80", "VNC port must be from 5900 to 65535."),
        ("iso", "--iso", "../x.iso", "'../x.iso' is not a volume in pool '..'"),
    ],
)
def test_bad_create_input_gets_the_same_message_everywhere(
    admin_client: Client, create_node: Node, field: str, flag: str, value: str, message: str
) -> None:
    data = form_data(**{field: value})
    args = ["alpha", "web1", "--vcpus", "1", "--memory", "512", "--disk-size", "5"]
    args += ["--iso", "isos/debian-12.iso", "--network", "lan", "--os-variant", "generic"]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(CommandError) as refused:
        call_command("createvm", *args)
    assert f"{field}: {message}" in str(refused.value)
    url = reverse("vms:vm_create") + f"?node={create_node.pk}"
    page = admin_client.post(url, data)
    assert page.status_code == 200 and message in html.unescape(page.content.decode())
    body: dict[str, Any] = {
        k: v for k, v in data.items() if v and k not in ("network", "import_volume")
    }
    response = _api().post("/api/v1/vms/", {**body, "node": "alpha", "network": "lan"}, "json")
    assert response.status_code == 400
    assert any(message in m for m in response.json()["fields"][field])
    assert not Job.objects.exists()


def test_options_stored_by_a_job_read_back_unchanged() -> None:
    options = MigrationOptions(bandwidth_mib_s=10, postcopy=True, timeout_policy="postcopy")
    assert migration_options(asdict(options)) == options
    assert migration_options({}) == MigrationOptions()


def test_yes_and_no_words_mean_the_same_on_every_path() -> None:
    assert [truthy(v) for v in ("on", "yes", "1", "true", True)] == [True] * 5
    assert [truthy(v) for v in ("off", "no", "0", "", False)] == [False] * 5
    assert migration_options({"postcopy": "off"}).postcopy is False
    assert migration_options({"compressed": "on"}).compression == "xbzrle"


# --- evacuation ---------------------------------------------------------------------------


def test_evacuate_flags_and_api_fields_are_the_forms() -> None:
    names = set(EvacuateForm.base_fields)
    flags = {s for a in _parser("evacuate")._actions for s in a.option_strings}
    assert {flag_of(n) for n in names - {"options"}} | {"--return", "--option"} <= flags
    assert set(EvacuateSerializer().fields) == names
    assert EvacuateSerializer().fields["parallel"].max_value == 8
    # every move's migration options: migratevm's flags (without its short spellings)
    moves = set(MigrationOptionsForm.base_fields) - {"check_only"}
    assert {flag_of(n) for n in moves} <= flags


def test_the_evacuation_page_renders_the_forms_fields(admin_client: Client) -> None:
    source = _online("src", "198.51.100.11")
    _online("dst", "198.51.100.12")
    page = admin_client.get(f"/nodes/{source.pk}/evacuate/?parallel=2&to=dst").content.decode()
    for name in ("to", "include_stopped", "parallel", "per_destination"):
        assert f'id="id_{name}"' in page
    assert '<option value="dst" selected>' in page
    assert '<input type="hidden" name="parallel" value="2">' in page


def test_evacuate_option_flags_and_option_pairs_reach_the_same_form() -> None:
    _online("src", "198.51.100.11")
    with pytest.raises(CommandError) as flag:
        call_command("evacuate", "src", "--max-downtime-ms", "20")
    with pytest.raises(CommandError) as pair:
        call_command("evacuate", "src", "--option", "max_downtime_ms=20")
    assert str(flag.value) == str(pair.value)
    assert "Max downtime below 50 ms" in str(flag.value)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("parallel", "0", "1 to 8 migrations at once."),
        ("per_destination", "lots", "1 to 8 migrations into one node at once."),
    ],
)
def test_bad_evacuation_input_gets_the_same_message_everywhere(
    admin_client: Client, field: str, value: str, message: str
) -> None:
    source = _online("src", "198.51.100.11")
    with pytest.raises(CommandError, match=message):
        call_command("evacuate", "src", flag_of(field), value)
    page = admin_client.post(f"/nodes/{source.pk}/evacuate/", {field: value}, follow=True)
    assert message in page.content.decode()
    response = _api().post(f"/api/v1/nodes/{source.pk}/evacuate/", {field: value}, "json")
    assert response.status_code == 400 and response.json()["fields"] == {field: [message]}
    with pytest.raises(CommandError, match="Max downtime below 50 ms"):
        call_command("evacuate", "src", "--option", "max_downtime_ms=20")
    assert not Job.objects.exists()
