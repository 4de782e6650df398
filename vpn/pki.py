"""The tunnels' PKI, with the ``cryptography`` library: CA, node certificates, tls-crypt.

Layout under ``KVMMGR_VPN_DIR/TUNNEL/`` (directory 0700, every file 0600)::

    ca.key ca.crt crl.pem tls-crypt.key  NODE.key NODE.crt  NODE.mgmt

Private keys are generated here and only ever leave as part of a node's config
file (written 0600 over sftp). Nothing in this module logs key material, and
nothing in the database holds it. ``NODE.mgmt`` is the password of the node's
OpenVPN management interface.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ValidationError

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class NodeCredentials:
    """Everything a node's config embeds. Treat as secret; never log or render in pages."""

    ca_pem: str
    cert_pem: str
    key_pem: str
    tls_crypt: str
    crl_pem: str
    mgmt_password: str
    serial: str
    not_after: dt.datetime


def tunnel_dir(tunnel_name: str) -> Path:
    return Path(settings.KVMMGR_VPN_DIR) / tunnel_name


def _write_secret(path: Path, data: bytes) -> None:
    """Create with 0600 before writing: the content never sits in a wider-mode file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvmmgr"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def tls_crypt_key() -> str:
    """An OpenVPN static key (2048 bits) in the ``--genkey`` text format."""
    hex_key = secrets.token_bytes(256).hex()
    lines = [hex_key[i : i + 32] for i in range(0, len(hex_key), 32)]
    return (
        "-----BEGIN OpenVPN Static key V1-----\n"
        + "\n".join(lines)
        + "\n-----END OpenVPN Static key V1-----\n"
    )


def ensure_ca(tunnel_name: str) -> None:
    """Create the tunnel's CA, empty CRL and tls-crypt key once."""
    base = tunnel_dir(tunnel_name)
    if (base / "ca.crt").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"kvmmgr-vpn-{tunnel_name}-ca")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_secret(base / "ca.key", _key_pem(key))
    _write_secret(base / "tls-crypt.key", tls_crypt_key().encode())
    _write_secret(base / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write_crl(tunnel_name, [])


def _load_ca(tunnel_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    base = tunnel_dir(tunnel_name)
    cert = x509.load_pem_x509_certificate((base / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((base / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _revoked_serials(tunnel_name: str) -> list[int]:
    path = tunnel_dir(tunnel_name) / "crl.pem"
    if not path.exists():
        return []
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return [entry.serial_number for entry in crl]


def _write_crl(tunnel_name: str, serials: list[int]) -> None:
    ca_cert, ca_key = _load_ca(tunnel_name)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=CERT_DAYS))
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_secret(tunnel_dir(tunnel_name) / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def issue(tunnel_name: str, node_name: str, *, server: bool) -> tuple[str, dt.datetime]:
    """(Re)issue ``node_name``'s key and certificate; returns (serial hex, not_after).

    The common name is the node name: the server's ``client-config-dir`` keys
    each client's fixed address on it.
    """
    ensure_ca(tunnel_name)
    ca_cert, ca_key = _load_ca(tunnel_name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = now + dt.timedelta(days=CERT_DAYS)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(node_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    base = tunnel_dir(tunnel_name)
    _write_secret(base / f"{node_name}.key", _key_pem(key))
    _write_secret(base / f"{node_name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    if not (base / f"{node_name}.mgmt").exists():
        _write_secret(base / f"{node_name}.mgmt", secrets.token_urlsafe(24).encode())
    return format(cert.serial_number, "x"), not_after


def revoke(tunnel_name: str, node_name: str) -> str:
    """Add the node's current certificate to the CRL and delete its key; returns the serial."""
    base = tunnel_dir(tunnel_name)
    cert_path = base / f"{node_name}.crt"
    if not cert_path.exists():
        raise ValidationError(f"{node_name} has no certificate in tunnel {tunnel_name}.")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    _write_crl(tunnel_name, [*_revoked_serials(tunnel_name), cert.serial_number])
    for suffix in ("crt", "key"):
        (base / f"{node_name}.{suffix}").unlink(missing_ok=True)
    return format(cert.serial_number, "x")


def has_certificate(tunnel_name: str, node_name: str) -> bool:
    return (tunnel_dir(tunnel_name) / f"{node_name}.crt").exists()


def credentials(tunnel_name: str, node_name: str) -> NodeCredentials:
    """Read what ``node_name``'s config needs; raises if it has no certificate."""
    base = tunnel_dir(tunnel_name)
    if not has_certificate(tunnel_name, node_name):
        raise ValidationError(f"{node_name} has no certificate in tunnel {tunnel_name}.")
    cert_pem = (base / f"{node_name}.crt").read_text()
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return NodeCredentials(
        ca_pem=(base / "ca.crt").read_text(),
        cert_pem=cert_pem,
        key_pem=(base / f"{node_name}.key").read_text(),
        tls_crypt=(base / "tls-crypt.key").read_text(),
        crl_pem=(base / "crl.pem").read_text(),
        mgmt_password=(base / f"{node_name}.mgmt").read_text().strip(),
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc,
    )


def remove_tunnel(tunnel_name: str) -> None:
    """Forget a tunnel's whole PKI (after the tunnel row is deleted)."""
    base = tunnel_dir(tunnel_name)
    if base.is_dir():
        for path in base.iterdir():
            path.unlink()
        base.rmdir()
