"""Nodes: the KVM hosts the manager talks to."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from nodes import features as nf
from nodes.validators import (
    parse_node_uri,
    validate_migration_address,
    validate_name,
    validate_node_uri,
)


class VirtType(models.TextChoices):
    AUTO = "auto", "auto (KVM where the node offers it)"
    KVM = "kvm", "KVM"
    QEMU = "qemu", "QEMU/TCG (no hardware acceleration)"


class Node(models.Model):
    """A KVM host reachable through a libvirt URI.

    Reachability is recorded by the inventory refresh (``last_seen``,
    ``last_error``); pages read these fields and never contact the host.
    """

    name = models.CharField(max_length=63, unique=True, validators=[validate_name])
    uri = models.CharField(
        "libvirt URI", max_length=255, unique=True, validators=[validate_node_uri]
    )
    migration_address = models.CharField(
        max_length=253,
        blank=True,
        validators=[validate_migration_address],
        help_text="Address other nodes use to reach this one for migration "
        "(its VPN tunnel address where it has one). Empty: the URI's host.",
    )
    migration_ssh_port = models.PositiveIntegerField(
        "migration ssh port",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Port of this node's sshd at its migration address, for its peers "
        "(the manager's port forward is not theirs). Empty: 22, or the URI's port when "
        "the migration address is empty too.",
    )
    enabled = models.BooleanField(default=True)
    virt_type = models.CharField(
        "virtualization",
        max_length=8,
        choices=VirtType.choices,
        default=VirtType.AUTO,
        help_text="Pin to QEMU/TCG where /dev/kvm is missing or unusable (e.g. nested hosts).",
    )
    maintenance_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set while the node is in maintenance: never chosen as a destination "
        "(create, migrate); manage.py maintenance NODE on|off.",
    )
    maintenance_reason = models.CharField(max_length=200, blank=True)
    trusted_host_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="SHA256 fingerprint of the node's ssh host key that an admin confirmed "
        "(manage.py trustnode). Migration trust (peers' keys in this node's "
        "authorized_keys) is installed only while it matches the manager's pinned key.",
    )
    facts = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the node offers (memory, pools, ISOs, networks), as last read; "
        "forms validate against it without contacting the node.",
    )
    facts_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_migration_address(self) -> str:
        """The address migrations use: explicit, else the URI's host."""
        if self.migration_address:
            return self.migration_address
        return parse_node_uri(self.uri, resolve=False).host

    @property
    def effective_migration_ssh_port(self) -> int:
        """The ssh port peers use: explicit; else the URI's port when peers use the
        URI's host too (no migration address: the manager's path is theirs); else 22."""
        if self.migration_ssh_port:
            return self.migration_ssh_port
        if not self.migration_address:
            return parse_node_uri(self.uri, resolve=False).port or 22
        return 22

    @property
    def migration_ssh_user(self) -> str:
        """The account peers log in as: the URI's user (migration trust authorizes
        the peers' keys for that account)."""
        return parse_node_uri(self.uri, resolve=False).user or ""

    @property
    def peer_path(self) -> str:
        """How peers reach this node's sshd for migration, as ``user@address:port``."""
        address = self.effective_migration_address
        host = f"[{address}]" if ":" in address else address
        user = f"{self.migration_ssh_user}@" if self.migration_ssh_user else ""
        return f"{user}{host}:{self.effective_migration_ssh_port}"

    @property
    def console_host(self) -> str:
        """Where a VNC client should connect for this node's consoles."""
        host = parse_node_uri(self.uri, resolve=False).host
        return host or settings.KVMMGR_LOCAL_CONSOLE_HOST

    def stale_after(self) -> timedelta:
        return timedelta(
            seconds=settings.KVMMGR_INVENTORY_INTERVAL * settings.KVMMGR_OFFLINE_AFTER_INTERVALS
        )

    @property
    def effective_virt_type(self) -> str:
        """The domain type new VMs get: the pin, else kvm where the node offers it."""
        if self.virt_type != VirtType.AUTO:
            return self.virt_type
        return "kvm" if self.facts.get("kvm_usable", True) else "qemu"

    @property
    def libvirt_version(self) -> str:
        """libvirt's version as last read ("" before the first read)."""
        return str(self.facts.get("libvirt_version") or "")

    @property
    def qemu_version(self) -> str:
        """QEMU's version as last read ("" before the first read or on another driver)."""
        return nf.qemu_version_of(self.facts)

    @property
    def migration_feature_rows(self) -> list[tuple[str, bool, str]]:
        """(label, offered, why) per migration feature, from the facts; empty before a read."""
        if not self.libvirt_version:
            return []
        have = set(nf.features_of(self.facts))
        return [(f.label, f.key in have, f.why) for f in nf.FEATURES]

    @property
    def is_online(self) -> bool:
        """Online: the last contact attempt succeeded and is recent."""
        if not self.enabled or self.last_seen is None or self.last_error:
            return False
        return timezone.now() - self.last_seen <= self.stale_after()

    @property
    def in_maintenance(self) -> bool:
        return self.maintenance_since is not None

    @property
    def status_label(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.last_seen is None and not self.last_error:
            return "unknown"
        return "online" if self.is_online else "offline"
