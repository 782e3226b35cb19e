"""A throwaway PKI on disk for TLS tests: a CA, a server certificate for 127.0.0.1 and a
client certificate, as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.redis_server import RedisTls


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


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


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca[0].subject if ca else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False) if usage else builder
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(ca[1], hashes.SHA256())


def make_redis_tls(directory: Path, *, require_client_cert: bool = True) -> RedisTls:
    """Write ca.pem, server.pem/-key.pem and client.pem/-key.pem into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("redis test CA", ca_key, None, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("127.0.0.1", server_key, (ca, ca_key), ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("dpop-verifier", client_key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    return RedisTls(
        ca_file=_write_cert(directory / "ca.pem", ca),
        cert_file=_write_cert(directory / "server.pem", server),
        key_file=_write_key(directory / "server-key.pem", server_key),
        client_cert_file=_write_cert(directory / "client.pem", client),
        client_key_file=_write_key(directory / "client-key.pem", client_key),
        require_client_cert=require_client_cert,
    )


def make_untrusted_ca(directory: Path) -> Path:
    """A CA file that did not sign anything the server presents."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _write_cert(directory / "other-ca.pem", _issue("someone else", key, None, None))
