"""A throw-away certificate authority for TLS tests: a CA, a server certificate for 127.0.0.1
and a client certificate, all EC P-256 and valid for two hours. The one place tests make
certificates (gRPC TLS, Redis TLS in tests/support/tls_files.py)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TestPki:
    """PEM files written by :func:`make_pki`."""

    __test__ = False  # not a pytest test class

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_pki(directory: Path) -> TestPki:
    """Write ``ca.pem``, ``server.pem``/``server.key`` and ``client.pem``/``client.key``
    (keys readable by the owner only) into ``directory``, creating it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, (ca, ca_key), ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("client", client_key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = TestPki(
        ca_file=directory / "ca.pem",
        server_cert_file=directory / "server.pem",
        server_key_file=directory / "server.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
    )
    _write_cert(pki.ca_file, ca)
    _write_cert(pki.server_cert_file, server)
    _write_key(pki.server_key_file, server_key)
    _write_cert(pki.client_cert_file, client)
    _write_key(pki.client_key_file, client_key)
    return pki


def make_untrusted_ca(directory: Path) -> Path:
    """Write ``other-ca.pem``: a CA that signed nothing a test server presents."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _write_cert(directory / "other-ca.pem", _certificate("someone else", key, None, None))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False) if usage else builder
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(issuer[1], hashes.SHA256())
