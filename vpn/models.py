"""Managed OpenVPN overlays between nodes.

A :class:`Tunnel` has one server member and any number of client members; each
member is one node with a fixed tunnel address. Key material never lives in the
database: it sits in ``KVMMGR_VPN_DIR`` with mode 0600 (see ``vpn.pki``).
"""

from __future__ import annotations

from django.db import models

from nodes.models import Node
from vpn.choices import MemberRole, TunnelMode, VpnState
from vpn.validators import validate_cidr, validate_route_cidr, validate_tunnel_name


class Tunnel(models.Model):
    """One overlay: its server, subnet, mode and what clients connect to."""

    name = models.CharField(max_length=10, unique=True, validators=[validate_tunnel_name])
    mode = models.CharField(max_length=8, choices=TunnelMode.choices, default=TunnelMode.ROUTED)
    subnet = models.CharField(
        "tunnel subnet", max_length=43, validators=[validate_cidr], help_text="e.g. 100.64.0.0/24"
    )
    port = models.PositiveIntegerField(default=1194, help_text="UDP port of the server")
    server_endpoint = models.CharField(
        max_length=253,
        blank=True,
        help_text="Address clients connect to (the server's public or NATed address). "
        "Empty: the host of the server node's URI.",
    )
    bridge = models.CharField(
        max_length=15,
        blank=True,
        help_text="Bridged mode: the VM bridge on every node that the TAP device joins.",
    )
    mtu = models.PositiveIntegerField(
        default=1500,
        help_text="MTU of the tunnel device (and of the VM bridge in bridged mode); "
        "the overlay adds ~70 bytes per packet, so bridged overlays default to 1400.",
    )
    manager_network = models.CharField(
        max_length=43,
        blank=True,
        validators=[validate_route_cidr],
        help_text="Network of the manager, routed through the tunnel on clients so the "
        "manager can reach nodes by their tunnel address. Empty: none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def device(self) -> str:
        """The tun/tap interface name on every node (kernel limit: 15 characters)."""
        return f"kvpn-{self.name}"

    @property
    def server(self) -> TunnelMember | None:
        return self.members.filter(role=MemberRole.SERVER).select_related("node").first()


class TunnelMember(models.Model):
    """A node's place in a tunnel: role, fixed address, certificate and last status."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="members")
    node = models.OneToOneField(Node, on_delete=models.CASCADE, related_name="vpn_member")
    role = models.CharField(max_length=8, choices=MemberRole.choices)
    address = models.GenericIPAddressField("tunnel address", protocol="IPv4")
    control_uri = models.CharField(
        max_length=255,
        blank=True,
        help_text="Out-of-band qemu+ssh URI used to control OpenVPN on this node when its "
        "regular URI goes through the tunnel (e.g. an ssh port-forward on the NAT router).",
    )
    cert_serial = models.CharField(max_length=40, blank=True)
    cert_not_after = models.DateTimeField(null=True, blank=True)
    installed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=VpnState.choices, default=VpnState.UNKNOWN)
    state_reason = models.TextField(blank=True)
    state_at = models.DateTimeField(null=True, blank=True)
    peers = models.JSONField(default=list, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["tunnel", "-role", "address"]
        constraints = [
            models.UniqueConstraint(
                fields=["tunnel"],
                condition=models.Q(role=MemberRole.SERVER),
                name="vpn_one_server_per_tunnel",
            ),
            models.UniqueConstraint(fields=["tunnel", "address"], name="vpn_unique_address"),
        ]

    def __str__(self) -> str:
        return f"{self.node.name} in {self.tunnel.name} ({self.role})"

    @property
    def is_server(self) -> bool:
        return self.role == MemberRole.SERVER

    @property
    def effective_control_uri(self) -> str:
        return self.control_uri or self.node.uri
