"""What the API returns, and the shapes of what it accepts. An action's input is its
form's (``kvmmgr.inputs.api``): the form validates it; the services check meaning
against the database (nodes, names, states)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs import registry
from jobs.models import Job
from kvmmgr.inputs.api import ServiceFormSerializer, form_serializer
from kvmmgr.models import ApiToken, AuditEntry
from nodes.forms import MaintenanceForm, NodeForm
from nodes.models import Node
from nodes.services import hostkeys
from vms.forms.create import CreateVMForm
from vms.forms.evacuate import EvacuateForm
from vms.forms.migrate import MigrationOptionsForm
from vms.models import VirtualMachine
from vpn.models import Tunnel, TunnelMember


class NodeSerializer(serializers.ModelSerializer[Node]):
    status = serializers.CharField(source="status_label", read_only=True)
    online = serializers.BooleanField(source="is_online", read_only=True)
    peer_path = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "id", "url", "name", "uri", "migration_address", "migration_ssh_port", "enabled",
            "virt_type", "status", "online", "peer_path", "last_seen", "last_error",
            "trusted_host_key", "facts_at", "maintenance_since", "maintenance_reason",
        ]  # fmt: skip
        read_only_fields = [
            "last_seen", "last_error", "trusted_host_key", "facts_at", "maintenance_since",
            "maintenance_reason",
        ]  # fmt: skip

    def get_url(self, node: Node) -> str:
        return f"/api/v1/nodes/{node.pk}/"


class NodeDetailSerializer(NodeSerializer):
    host_key = serializers.SerializerMethodField(
        help_text="SHA256 fingerprint of the ssh host key the manager pinned ('' if none)"
    )

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "host_key", "facts"]

    def get_host_key(self, node: Node) -> str:
        return hostkeys.pinned_fingerprint(node)


NodeInputSerializer = form_serializer("NodeInputSerializer", NodeForm, base=ServiceFormSerializer)
MaintenanceSerializer = form_serializer(
    "MaintenanceInputSerializer", MaintenanceForm, base=ServiceFormSerializer
)


EvacuateSerializer = form_serializer("EvacuateSerializer", EvacuateForm, base=ServiceFormSerializer)


class MoveSerializer(serializers.Serializer[dict[str, Any]]):
    uuid = serializers.CharField()
    name = serializers.CharField()
    memory_mib = serializers.IntegerField()
    live = serializers.BooleanField()
    dest = serializers.CharField()
    reason = serializers.CharField()
    state = serializers.CharField()


class VMSerializer(serializers.ModelSerializer[VirtualMachine]):
    node = serializers.CharField(source="node.name", read_only=True)
    url = serializers.SerializerMethodField()
    has_console = serializers.BooleanField(read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "uuid", "url", "name", "node", "state", "vcpus", "memory_mib", "has_console",
            "vnc_listen", "vnc_port", "observed_at",
        ]  # fmt: skip

    def get_url(self, vm: VirtualMachine) -> str:
        return f"/api/v1/vms/{vm.uuid}/"


class VMDetailSerializer(VMSerializer):
    class Meta(VMSerializer.Meta):
        fields = [*VMSerializer.Meta.fields, "xml_summary"]


CreateVMSerializer = form_serializer(
    "CreateVMSerializer",
    CreateVMForm,
    extra={"node": serializers.CharField(help_text="node name")},
    base=ServiceFormSerializer,
)


class ShutdownSerializer(serializers.Serializer[dict[str, Any]]):
    timeout = serializers.IntegerField(required=False, help_text="seconds to wait for the guest")


class DeleteSerializer(serializers.Serializer[dict[str, Any]]):
    disks = serializers.ListField(child=serializers.CharField(), required=False)
    force_off = serializers.BooleanField(required=False)


MigrateSerializer = form_serializer(
    "MigrateSerializer",
    MigrationOptionsForm,
    extra={"destination": serializers.CharField(help_text="node name")},
)


class JobSerializer(serializers.ModelSerializer[Job]):
    # The model field has no choices (apps register their kinds): the registry's, here.
    kind = serializers.ChoiceField(choices=registry.choices())
    url = serializers.SerializerMethodField()
    vm = serializers.SerializerMethodField()
    node = serializers.CharField(source="node.name", read_only=True, default=None)

    class Meta:
        model = Job
        fields = [
            "id", "url", "kind", "status", "progress", "progress_detail", "target_name", "vm",
            "node", "requested_by", "error", "command", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip

    def get_url(self, job: Job) -> str:
        return f"/api/v1/jobs/{job.pk}/"

    def get_vm(self, job: Job) -> str | None:
        return str(job.vm.uuid) if job.vm_id and job.vm else None


class JobDetailSerializer(JobSerializer):
    log = serializers.SerializerMethodField()
    log_offset = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "log", "log_offset"]

    def get_log(self, job: Job) -> str:
        return job.log[int(self.context.get("log_offset", 0)) :]

    def get_log_offset(self, job: Job) -> int:
        return len(job.log)


class TunnelMemberSerializer(serializers.ModelSerializer[TunnelMember]):
    node = serializers.CharField(source="node.name", read_only=True)

    class Meta:
        model = TunnelMember
        fields = [
            "node", "role", "address", "state", "state_reason", "state_at", "cert_not_after",
            "bytes_in", "bytes_out",
        ]  # fmt: skip


class TunnelSerializer(serializers.ModelSerializer[Tunnel]):
    members = TunnelMemberSerializer(many=True, read_only=True)

    class Meta:
        model = Tunnel
        fields = ["id", "name", "mode", "subnet", "port", "server_endpoint", "mtu", "members"]


class VpnActionSerializer(serializers.Serializer[dict[str, Any]]):
    node = serializers.CharField(help_text="the member's node name")


class AuditSerializer(serializers.ModelSerializer[AuditEntry]):
    class Meta:
        model = AuditEntry
        fields = [
            "id", "at", "actor", "role", "source", "action", "target", "params", "result",
            "detail", "job_id",
        ]  # fmt: skip


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "prefix", "created_at", "expires_at", "last_used_at",
                  "revoked_at"]  # fmt: skip


class AcceptedSerializer(serializers.Serializer[dict[str, Any]]):
    """What an action answers (202): the job that does it."""

    job = serializers.CharField()
    status = serializers.CharField()
