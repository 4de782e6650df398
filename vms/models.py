"""The VM inventory: what the manager last observed on each node."""

from __future__ import annotations

from django.db import models

from nodes.hypervisor.states import VMState
from nodes.models import Node


class VirtualMachineQuerySet(models.QuerySet["VirtualMachine"]):
    def present(self) -> VirtualMachineQuerySet:
        return self.filter(vanished_at__isnull=True)


class VirtualMachine(models.Model):
    """One libvirt domain as last observed by the inventory refresh.

    A VM is identified by its libvirt UUID across nodes, so a migrated VM keeps
    its row (and history); ``node`` is where it was last seen. A domain that is
    no longer on its node is marked with ``vanished_at`` rather than deleted.
    """

    uuid = models.UUIDField(unique=True)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="vms")
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=VMState.choices, default=VMState.UNKNOWN)
    vcpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveBigIntegerField(default=0)
    persistent = models.BooleanField(default=True)
    vnc_port = models.PositiveIntegerField(null=True, blank=True)
    vnc_listen = models.CharField(max_length=255, blank=True)
    observed_at = models.DateTimeField()
    vanished_at = models.DateTimeField(null=True, blank=True)
    xml_summary = models.JSONField(
        default=dict,
        blank=True,
        help_text="Disks, NICs and consoles from the domain XML, as last observed; "
        "the detail page and delete's disk choice read it instead of the node.",
    )
    # Set by the create job; encrypted (vms.vncsecret), never logged or rendered as is.
    vnc_password_sealed = models.TextField(blank=True, editable=False)

    objects = VirtualMachineQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["node", "vanished_at", "name"], name="vm_node_present_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.node_id}"

    @property
    def is_active(self) -> bool:
        return self.state in VMState.active()

    @property
    def has_console(self) -> bool:
        """A running VM with a VNC display the inventory has seen."""
        return bool(self.is_active and self.vnc_port and not self.vanished_at)

    @property
    def vnc_url(self) -> str:
        """A ``vnc://`` link for native clients, where the display listens on an address
        a client may reach: a specific address, or all addresses (then the node's URI
        host). A display on the node's loopback (what kvmmgr creates) has none: the
        browser console or an ssh tunnel reaches it."""
        if not self.has_console:
            return ""
        host = self.vnc_listen
        if host in {"127.0.0.1", "::1", "localhost"}:
            return ""
        if not host or host in {"0.0.0.0", "::"}:
            host = self.node.console_host
        if ":" in host:
            host = f"[{host}]"
        return f"vnc://{host}:{self.vnc_port}"


class ConsoleTicket(models.Model):
    """A one-time pass for one browser console connection through the console proxy.

    Only a SHA-256 of the token is stored. A ticket opens one connection, within
    ``KVMMGR_CONSOLE_TICKET_SECONDS`` of being issued, for the user and the login
    session it was issued to; the proxy then reads the VM's node and VNC port from
    the inventory, so a console follows its VM after a migration.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(max_length=64)
    issued_to = models.CharField(max_length=64, blank=True, help_text="client address")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"console ticket {self.pk} for {self.user_id} on {self.vm_id}"
