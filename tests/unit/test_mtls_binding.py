"""The RFC 8705 binding check (``verifier.mtls.binding``): ``cnf["x5t#S256"]`` against the
client's certificate."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.support.mtls_pki import MtlsPki, make_mtls_pki
from verifier.mtls import (
    CertificateError,
    ClientCertificate,
    certificate_from_der,
    check_certificate_binding,
    thumbprint_bytes,
    x5t_s256,
)

RFC8705_FIGURE_X5T = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
"""The ``cnf["x5t#S256"]`` of RFC 8705 §3.1 (and §3.2). The RFC prints no certificate it is the
hash of (and tests/fixtures/rfc9449-vectors.json holds none), so it is a syntax vector only."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return make_mtls_pki(tmp_path_factory.mktemp("mtls-pki"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def code_of(x5t: object, certificate: ClientCertificate | None) -> str:
    with pytest.raises(CertificateError) as caught:
        check_certificate_binding(x5t, certificate)
    return caught.value.code


def test_x5t_s256_is_unpadded_base64url_of_the_der_sha256(pki: MtlsPki) -> None:
    value = x5t_s256(pki.client.der)
    assert value == b64url(hashlib.sha256(pki.client.der).digest())
    assert len(value) == 43 and "=" not in value


def test_the_rfc8705_example_value_is_not_canonical() -> None:
    # Its last character, '2', leaves unused bits set (RFC 4648 §3.5): it decodes to 32 bytes
    # but no encoder of a SHA-256 writes it, so, like every base64url value the service reads,
    # it is refused rather than read leniently.
    assert len(base64.urlsafe_b64decode(RFC8705_FIGURE_X5T + "=")) == 32
    with pytest.raises(CertificateError) as caught:
        thumbprint_bytes(RFC8705_FIGURE_X5T)
    assert caught.value.code == "client_certificate_mismatch"
    canonical = b64url(base64.urlsafe_b64decode(RFC8705_FIGURE_X5T + "="))
    assert canonical[:42] == RFC8705_FIGURE_X5T[:42] and canonical != RFC8705_FIGURE_X5T
    assert len(thumbprint_bytes(canonical)) == 32


def test_bound_certificate_passes(pki: MtlsPki) -> None:
    for identity in (pki.client, pki.self_signed, pki.chained_client):  # RFC 8705 §2.2: any
        check_certificate_binding(x5t_s256(identity.der), certificate_from_der(identity.der))


def test_hash_only_certificate_passes(pki: MtlsPki) -> None:
    digest = hashlib.sha256(pki.client.der).digest()
    check_certificate_binding(x5t_s256(pki.client.der), ClientCertificate(digest, None))


def test_other_certificate_is_a_mismatch(pki: MtlsPki) -> None:
    certificate = certificate_from_der(pki.other_client.der)
    assert code_of(x5t_s256(pki.client.der), certificate) == "client_certificate_mismatch"
    assert code_of(RFC8705_FIGURE_X5T, certificate) == "client_certificate_mismatch"


def test_no_certificate_is_missing(pki: MtlsPki) -> None:
    assert code_of(x5t_s256(pki.client.der), None) == "client_certificate_missing"


def _malformed(der: bytes) -> list[object]:
    good = x5t_s256(der)
    digest = hashlib.sha256(der).digest()
    return [
        b64url(digest[:31]),  # 31 bytes
        b64url(digest + b"\x00"),  # 33 bytes
        good + "=",  # padded
        base64.b64encode(digest).decode(),  # standard base64 ('+', '/', padding)
        "+" + good[1:],  # a standard-base64 character
        f" {good}",
        f"{good}\n",
        good[:42] + "B",  # set unused bits: a second spelling of 32 bytes
        digest.hex(),  # hex: XFCC's spelling, not x5t#S256's
        "",
        None,
        42,
        [good],
        {"x5t#S256": good},
        good.encode(),
        True,
    ]


def test_malformed_thumbprints_never_match(pki: MtlsPki) -> None:
    certificate = certificate_from_der(pki.client.der)
    for value in _malformed(pki.client.der):
        assert code_of(value, certificate) == "client_certificate_mismatch", value
        assert code_of(value, None) == "client_certificate_mismatch", value


def test_error_messages_never_carry_the_certificate(pki: MtlsPki) -> None:
    certificate = certificate_from_der(pki.other_client.der)
    with pytest.raises(CertificateError) as caught:
        check_certificate_binding(x5t_s256(pki.client.der), certificate)
    message = str(caught.value)
    assert x5t_s256(pki.client.der) not in message
    assert x5t_s256(pki.other_client.der) not in message
    assert json.dumps(message)  # a plain one-line string
