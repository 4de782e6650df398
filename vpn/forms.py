"""A tunnel's input and a member's: the one schema for ``vpn create`` and ``vpn add``
(and any page or API that creates tunnels). The messages are ``vpn.validators``' and
``create_tunnel``'s own; those services keep their guards for every other caller."""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from kvmmgr.inputs.fields import Choice, WholeNumber, errors_of
from nodes.models import Node
from nodes.validators import validate_host, validate_node_uri
from vpn.choices import TunnelMode
from vpn.models import Tunnel
from vpn.services.lookup import get_node, ipv4_of
from vpn.validators import parse_cidr, validate_bridge, validate_route_cidr, validate_tunnel_name

MTU_TEXT = "MTU {value} is not in 576–9000."
PORT_TEXT = "Port {value} is not in 1–65535."


def _text(help_text: str, **kwargs: Any) -> forms.CharField:
    kwargs.setdefault("required", False)
    return forms.CharField(help_text=help_text, **kwargs)


def _field_help(name: str) -> str:
    return str(Tunnel._meta.get_field(name).help_text)


class TunnelForm(forms.Form):
    """A tunnel with its server node: name, subnet, mode (and bridge), port, endpoint."""

    cli_aliases: ClassVar[dict[str, str]] = {"server_endpoint": "--endpoint"}

    name = forms.CharField(
        help_text="1–10 lowercase letters, digits or '-' (the device is kvpn-NAME)",
        required=False,  # an empty one gets validate_tunnel_name's words
    )
    server = forms.CharField(
        help_text="server node name", error_messages={"required": "Give the server node."}
    )
    subnet = forms.CharField(
        help_text="tunnel subnet, e.g. 100.64.0.0/24",
        error_messages={"required": "Give the tunnel subnet, e.g. 100.64.0.0/24."},
    )
    mode = Choice(
        choices=TunnelMode.choices,
        default=TunnelMode.ROUTED,
        normalize=None,
        message="Unknown mode {value!r}: routed or bridged.",
        help_text="routed (TUN) or bridged (TAP, with --bridge)",
    )
    bridge = _text("bridged mode: the VM bridge, e.g. br0")
    mtu = WholeNumber(
        noun="MTU",
        low=576,
        high=9000,
        invalid="MTU must be a whole number (got {value!r}).",
        out_of_range=MTU_TEXT,
        help_text="default: 1500, or 1400 for a bridged tunnel",
    )
    port = WholeNumber(
        noun="Port",
        low=1,
        high=65535,
        default=1194,
        invalid="Port must be a whole number (got {value!r}).",
        out_of_range=PORT_TEXT,
        help_text=_field_help("port"),
    )
    server_endpoint = _text(_field_help("server_endpoint"))
    manager_network = _text(_field_help("manager_network"))
    control_uri = _text("out-of-band qemu+ssh URI of the server")

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        validate_tunnel_name(name)
        return name

    def clean_server(self) -> Node:
        return get_node(self.cleaned_data["server"])

    def clean_subnet(self) -> str:
        return str(parse_cidr(self.cleaned_data["subnet"]))

    def clean_server_endpoint(self) -> str:
        endpoint: str = self.cleaned_data["server_endpoint"]
        if endpoint:
            validate_host(endpoint, resolve=False)
        return endpoint

    def clean_manager_network(self) -> str:
        network: str = self.cleaned_data["manager_network"]
        if network:
            validate_route_cidr(network)
        return network

    def clean_control_uri(self) -> str:
        uri: str = self.cleaned_data["control_uri"]
        if uri:
            validate_node_uri(uri)
        return uri

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        mode, bridge = data.get("mode"), data.get("bridge", "")
        try:
            if mode == TunnelMode.BRIDGED:
                validate_bridge(bridge)
            elif bridge:
                raise ValidationError("A bridge only applies to bridged tunnels.", "invalid_bridge")
        except ValidationError as exc:
            self.add_error("bridge", exc)
        subnet = data.get("subnet")
        if subnet is None:
            return data
        network = ipaddress.ip_network(subnet)
        manager = data.get("manager_network")
        if manager and ipaddress.ip_network(manager).overlaps(network):
            self.add_error(
                "manager_network",
                f"The manager network {manager} overlaps the tunnel subnet {network}.",
            )
        endpoint = data.get("server_endpoint")
        address = ipv4_of(endpoint) if endpoint else None
        if address is not None and address in network:
            self.add_error(
                "server_endpoint",
                f"The server endpoint {endpoint} lies inside the tunnel subnet.",
            )
        return data

    def values(self) -> dict[str, Any]:
        """``create_tunnel``'s arguments; raises ``ValidationError`` per field when not valid."""
        if not self.is_valid():
            raise errors_of(self)
        return dict(self.cleaned_data)


class MemberForm(forms.Form):
    """A client node joining a tunnel."""

    tunnel = forms.CharField(help_text="tunnel name")
    node = forms.CharField(help_text="client node name")
    control_uri = _text("out-of-band qemu+ssh URI")

    def clean_tunnel(self) -> Tunnel:
        name = self.cleaned_data["tunnel"]
        tunnel = Tunnel.objects.filter(name=name).first()
        if tunnel is None:
            raise ValidationError(f"There is no tunnel named {name!r}.", code="unknown_tunnel")
        return tunnel

    def clean_node(self) -> Node:
        return get_node(self.cleaned_data["node"])

    def clean_control_uri(self) -> str:
        uri: str = self.cleaned_data["control_uri"]
        if uri:
            validate_node_uri(uri)
        return uri

    def values(self) -> dict[str, Any]:
        """``add_client``'s arguments; raises ``ValidationError`` per field when not valid."""
        if not self.is_valid():
            raise errors_of(self)
        return dict(self.cleaned_data)
