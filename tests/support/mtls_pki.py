"""Certificates for the mutual-TLS tests: a CA, a server certificate for 127.0.0.1 and localhost
whose URI SAN names the proxy (Envoy writes it as XFCC ``By=``), two CA-issued client
certificates, a self-signed one and an intermediate-issued one, all EC P-256, valid two hours.

:mod:`tests.support.pki` stays the PKI of the gRPC and Redis TLS tests; this one adds what
RFC 8705 needs (several clients, self-signed, a chain, a URI SAN on the server).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROXY_URI = "spiffe://dpop.test/front-proxy"
"""The front proxy's identity: its server certificate's URI SAN, hence XFCC ``By=``."""

Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class Identity:
    """One certificate with its key, in memory and as PEM files."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class MtlsPki:
    """Files written by :func:`make_mtls_pki`."""

    ca: Identity
    intermediate: Identity
    server: Identity
    client: Identity
    other_client: Identity
    self_signed: Identity
    chained_client: Identity
    """Issued by :attr:`intermediate`, which the CA issued."""
    other_ca: Identity
    """A CA that issued nothing here: trusting it trusts none of the clients."""


def make_mtls_pki(directory: Path) -> MtlsPki:
    """Write every certificate (``NAME.pem``) and key (``NAME.key``, owner-only) into
    ``directory``, creating it if needed."""
    directory.mkdir(parents=True, exist_ok=True)

    def make(name: str, subject: str, issuer: Issuer | None, kind: str) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _certificate(subject, key, issuer, kind)
        identity = Identity(certificate, key, directory / f"{name}.pem", directory / f"{name}.key")
        identity.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        identity.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        identity.key_file.chmod(0o600)
        return identity

    ca = make("ca", "mTLS test CA", None, "ca")
    intermediate = make("intermediate", "mTLS test intermediate", (ca.certificate, ca.key), "ca")
    return MtlsPki(
        ca=ca,
        intermediate=intermediate,
        server=make("server", "127.0.0.1", (ca.certificate, ca.key), "server"),
        client=make("client", "client-1", (ca.certificate, ca.key), "client"),
        other_client=make("other-client", "client-2", (ca.certificate, ca.key), "client"),
        self_signed=make("self-signed", "self-signed client", None, "client"),
        chained_client=make(
            "chained-client", "client-3", (intermediate.certificate, intermediate.key), "client"
        ),
        other_ca=make("other-ca", "someone else", None, "ca"),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: Issuer | None, kind: str
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        ski = issuer[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False
        )
    if kind == "ca":
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        return builder.add_extension(usage, True).sign(signer, hashes.SHA256())
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    if kind == "server":
        san: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.UniformResourceIdentifier(PROXY_URI),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        eku = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        # cryptography's client verifier wants a SAN on the leaf; RFC 8705 itself does not.
        san = [x509.UniformResourceIdentifier(f"spiffe://dpop.test/{subject.replace(' ', '-')}")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        eku = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), False)
    return builder.sign(signer, hashes.SHA256())
