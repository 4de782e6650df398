"""Validation of everything an admin types about a node, before it reaches libvirt.

Names and URIs end up in ssh command lines, file paths and libvirt calls, so the
rules are strict allow-lists rather than deny-lists.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
TEST_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+\.xml$")

SUPPORTED_SCHEMES = ("qemu", "qemu+ssh", "test")


def validate_name(value: str, *, what: str = "Name") -> None:
    """Libvirt-safe names: letters, digits, ``._-``; 1–63 chars; no leading dot or dash."""
    if not NAME_RE.fullmatch(value or ""):
        raise ValidationError(
            f"{what} {value!r} is not allowed: use 1–63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            code="invalid_name",
        )
    if ".." in value:
        raise ValidationError(f"{what} {value!r} must not contain '..'.", code="invalid_name")


def validate_host(host: str, *, resolve: bool = True) -> str:
    """Accept an IP literal or a DNS name; optionally require that it resolves."""
    if not host:
        raise ValidationError("The URI has no host name.", code="invalid_host")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(HOSTNAME_LABEL_RE.fullmatch(label) for label in labels):
        raise ValidationError(f"Host {host!r} is not a valid host name.", code="invalid_host")
    if resolve:
        try:
            socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise ValidationError(
                f"Host {host!r} does not resolve ({exc}). "
                "Use an IP address or fix DNS / /etc/hosts.",
                code="unresolvable_host",
            ) from exc
    return host


@dataclass(frozen=True)
class ParsedURI:
    """The parts of a node URI we use: transport, and for ssh the target."""

    scheme: str
    host: str
    port: int | None
    user: str | None
    path: str

    @property
    def is_remote(self) -> bool:
        return self.scheme == "qemu+ssh"


def parse_node_uri(uri: str, *, resolve: bool = True) -> ParsedURI:
    """Validate a libvirt URI an admin typed and return its parts.

    Accepted: ``qemu+ssh://[user@]host[:port]/system``, ``qemu:///system``,
    ``test:///default`` and ``test:///ABSOLUTE/PATH.xml``. Query strings are
    refused: the manager adds its own ssh options, and libvirt URI parameters
    such as ``command=`` or ``socket=`` would let a URI run arbitrary programs.
    """
    if not uri or uri != uri.strip() or any(ch.isspace() for ch in uri):
        raise ValidationError("The URI must not be empty or contain spaces.", code="invalid_uri")
    if any(ch in uri for ch in ";|&$`'\"\\<>(){}*!"):
        raise ValidationError(f"The URI {uri!r} contains shell metacharacters.", code="invalid_uri")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ValidationError(
            f"Unsupported URI scheme {parts.scheme!r}: use one of "
            "qemu+ssh://user@host/system, qemu:///system or test:///default.",
            code="invalid_scheme",
        )
    # "?" or "#" with nothing after them parses as no query at all, but libvirt then
    # gets ".../system??command=…" and drops the manager's ssh wrapper (plain ssh:
    # no key, no pinned host keys, no timeout): refuse the characters themselves.
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise ValidationError(
            "URI parameters (?…) are not accepted; the manager sets its own ssh options.",
            code="invalid_uri",
        )
    if ".." in parts.path:
        raise ValidationError("The URI path must not contain '..'.", code="invalid_uri")
    if scheme == "test":
        if parts.netloc:
            raise ValidationError("A test:/// URI has no host.", code="invalid_uri")
        if parts.path != "/default" and not TEST_PATH_RE.fullmatch(parts.path):
            raise ValidationError(
                "A test URI is test:///default or test:///ABSOLUTE/PATH.xml.", code="invalid_uri"
            )
        return ParsedURI(scheme, "", None, None, parts.path)
    if parts.path != "/system":
        raise ValidationError(
            f"A qemu URI must end in /system (got {parts.path or 'nothing'!r}).",
            code="invalid_uri",
        )
    if scheme == "qemu":
        if parts.netloc:
            raise ValidationError(
                "qemu://HOST/system is not supported; use qemu+ssh://user@HOST/system.",
                code="invalid_uri",
            )
        return ParsedURI(scheme, "", None, None, parts.path)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(
            "The ssh port must be a number from 1 to 65535.", code="invalid_port"
        ) from exc
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError("The ssh port must be a number from 1 to 65535.", code="invalid_port")
    if parts.password is not None:
        raise ValidationError(
            "Do not put a password in the URI; the manager logs in with its SSH key.",
            code="invalid_uri",
        )
    user = parts.username
    if user is not None and not SSH_USER_RE.fullmatch(user):
        raise ValidationError(f"SSH user {user!r} is not a valid user name.", code="invalid_user")
    host = validate_host(parts.hostname or "", resolve=resolve)
    return ParsedURI(scheme, host, port, user, parts.path)


def validate_node_uri(value: str) -> None:
    parse_node_uri(value)


def validate_migration_address(value: str) -> None:
    if value:
        validate_host(value, resolve=True)
