"""What every language's client harness (Go, Java, Node) is given and answers, judged the same
way for each: the parity the clients promise (docs/clients.md)."""

from __future__ import annotations

from typing import Any

from tests.support.pki import TestPki
from tests.support.service import ServiceProcess

TRANSPORT_FAILURES = (
    "tlsWrongServerName",
    "tlsUntrusted",
    "plaintextToTls",
    "mtlsWithoutCertificate",
    "unreachable",
)
"""Scenarios where no verifier answers: each must be an error, never an allow or a deny."""


def verifiers(
    service: ServiceProcess,
    tls_service: ServiceProcess,
    mtls_service: ServiceProcess,
    dead_address: str,
    pki: TestPki,
) -> dict[str, str]:
    """The verifiers (plaintext, TLS, mTLS, none listening) and TLS files a harness is given."""
    return {
        "plain": service.address,
        "tls": tls_service.address,
        "mtls": mtls_service.address,
        "dead": dead_address,
        "ca": str(pki.ca_file),
        "clientCert": str(pki.client_cert_file),
        "clientKey": str(pki.client_key_file),
    }


def allowed(outcome: dict[str, Any]) -> bool:
    """An allow, as a harness reports it."""
    return outcome.get("allowed") is True and outcome["reason"] == "ok" and outcome["status"] == 200
