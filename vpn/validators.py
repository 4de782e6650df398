"""Validation of what an admin types about tunnels, before anything is written."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

TUNNEL_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")
BRIDGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")


def validate_tunnel_name(value: str) -> None:
    """Short and lowercase: the name becomes the interface ``kvpn-NAME`` (15 chars max)."""
    if not TUNNEL_NAME_RE.fullmatch(value or ""):
        raise ValidationError(
            f"Tunnel name {value!r} is not allowed: 1–10 lowercase letters, digits or '-', "
            "starting with a letter.",
            code="invalid_tunnel_name",
        )


def parse_cidr(value: str) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR form with no host bits set, /8 to /30."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValidationError(
            f"{value!r} is not a valid network in CIDR form (e.g. 100.64.0.0/24): {exc}",
            code="invalid_cidr",
        ) from exc
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValidationError(f"{value}: only IPv4 tunnel networks are supported.", "invalid_cidr")
    if not 8 <= network.prefixlen <= 30:
        raise ValidationError(
            f"{value}: the prefix must be between /8 and /30.", code="invalid_cidr"
        )
    return network


def validate_cidr(value: str) -> None:
    parse_cidr(value)


def validate_route_cidr(value: str) -> None:
    """Any IPv4 network (a /32 for a single manager host is fine)."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValidationError(
            f"{value!r} is not a valid network in CIDR form: {exc}", code="invalid_cidr"
        ) from exc
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValidationError(f"{value}: only IPv4 networks are supported.", "invalid_cidr")


def validate_bridge(value: str) -> None:
    if not BRIDGE_RE.fullmatch(value or ""):
        raise ValidationError(
            f"Bridge name {value!r} is not a valid interface name.", code="invalid_bridge"
        )
