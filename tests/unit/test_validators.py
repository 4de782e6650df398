from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from nodes.validators import parse_node_uri, validate_name


@pytest.mark.parametrize("name", ["node1", "kvm-host.example", "A_b-9", "x" * 63])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "bad name",
        "a;b",
        "$(reboot)",
        "../etc",
        "a/b",
        "-leading",
        ".hidden",
        "x" * 64,
        "nоde",
        "a..b",
        "name\n",
        "`id`",
        "quote'",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError):
        validate_name(name)


@pytest.mark.parametrize(
    ("uri", "host", "port", "user"),
    [
        ("qemu+ssh://root@127.0.0.1/system", "127.0.0.1", None, "root"),
        ("qemu+ssh://admin@127.0.0.1:2222/system", "127.0.0.1", 2222, "admin"),
        ("qemu+ssh://localhost/system", "localhost", None, None),
        ("qemu:///system", "", None, None),
        ("test:///default", "", None, None),
        ("test:///srv/fake/node.xml", "", None, None),
    ],
)
def test_valid_uris(uri: str, host: str, port: int | None, user: str | None) -> None:
    parsed = parse_node_uri(uri)
    assert (parsed.host, parsed.port, parsed.user) == (host, port, user)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("qemu+ssh://root@host;reboot/system", "metacharacters"),
        ("qemu+ssh://root@$(id)/system", "metacharacters"),
        ("qemu+ssh://root@host name/system", "spaces"),
        ("test:///../../etc/passwd.xml", ".."),
        ("xen+ssh://root@127.0.0.1/system", "Unsupported URI scheme"),
        ("qemu+tcp://127.0.0.1/system", "Unsupported URI scheme"),
        ("qemu+ssh://root@no-such-host.invalid/system", "does not resolve"),
        ("qemu+ssh://root@127.0.0.1:70000/system", "1 to 65535"),
        ("qemu+ssh://root@127.0.0.1:0/system", "1 to 65535"),
        ("qemu+ssh://root@127.0.0.1/session", "/system"),
        ("qemu+ssh://root@127.0.0.1/system?command=/bin/sh", "parameters"),
        ("qemu+ssh://root@127.0.0.1/system?", "parameters"),
        ("qemu+ssh://root@127.0.0.1:2222/system?", "parameters"),
        ("qemu+ssh://root@127.0.0.1/system#", "parameters"),
        ("qemu:///system?", "parameters"),
        ("qemu+ssh://root:secret@127.0.0.1/system", "password"),
        ("qemu+ssh://Bad.User@127.0.0.1/system", "user"),
        ("qemu://127.0.0.1/system", "qemu+ssh"),
        ("", "empty"),
    ],
)
def test_invalid_uris(uri: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_node_uri(uri)
    assert fragment in " ".join(info.value.messages)


@pytest.mark.django_db
def test_a_stored_uri_with_a_bare_question_mark_never_reaches_libvirt() -> None:
    """A row written before the check (or by hand) is refused where URIs are built."""
    from nodes.hypervisor.connection import libvirt_uri_for
    from nodes.services.trust import peer_uri
    from tests.support.factories import make_node

    with pytest.raises(ValidationError):
        libvirt_uri_for("qemu+ssh://root@127.0.0.1/system?")
    node = make_node(name="n9", uri="qemu+ssh://root@127.0.0.1/system?")
    with pytest.raises(ValidationError):
        peer_uri(node)
