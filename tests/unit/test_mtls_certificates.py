"""Client certificates as proxies forward them (``verifier.mtls.certificates``): every format,
every malformed input, size bounds, XFCC trust, and the per-value cache."""

from __future__ import annotations

import base64
import datetime
import hashlib
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mtls_pki import PROXY_URI, MtlsPki, make_mtls_pki
from verifier.mtls import (
    CERTIFICATE_ERROR_CODES,
    CertificateError,
    certificate_from_der,
    certificate_from_envoy_peer,
    certificate_from_escaped_pem,
    certificate_from_header,
    certificate_from_pem,
    certificate_from_rfc9440,
    certificate_from_traefik,
    certificate_from_xfcc,
    check_chain,
    load_trust_roots,
    parse_xfcc,
    trusted_by_set,
)
from verifier.mtls.certificates import (
    CACHE_ENTRIES,
    MAX_CERTIFICATE_CHARS,
    MAX_CHAIN_ENTRIES,
    MAX_XFCC_CHARS,
    MAX_XFCC_ELEMENTS,
)

TRUSTED = frozenset({PROXY_URI})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return make_mtls_pki(tmp_path_factory.mktemp("mtls-pki"))


def code_of(call: Callable[[], object]) -> str:
    """The code of the CertificateError ``call`` raises (it must raise one)."""
    with pytest.raises(CertificateError) as caught:
        call()
    assert caught.value.code in CERTIFICATE_ERROR_CODES
    return caught.value.code


def escaped(pem: str) -> str:
    """URL-encoded PEM as Envoy writes it (every reserved character escaped)."""
    return urllib.parse.quote(pem, safe="")


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


# --- DER and PEM -------------------------------------------------------------------------


def test_der_gives_the_sha256_of_exactly_those_bytes(pki: MtlsPki) -> None:
    for identity in (pki.client, pki.self_signed, pki.chained_client):
        certificate = certificate_from_der(identity.der)
        assert certificate.der == identity.der
        assert certificate.sha256 == hashlib.sha256(identity.der).digest()
        assert certificate.chain == ()


@pytest.mark.parametrize(
    ("der", "code"),
    [
        (b"", "client_certificate_missing"),
        (b"\x30\x03\x02\x01\x01", "client_certificate_invalid"),  # DER, not a certificate
        (b"not a certificate", "client_certificate_invalid"),
        (b"\x30" + b"\x82\x40\x01" + b"\x00" * (MAX_CERTIFICATE_CHARS + 2),
         "client_certificate_invalid"),  # over the size bound
    ],
)  # fmt: skip
def test_der_that_is_not_a_certificate(der: bytes, code: str) -> None:
    assert code_of(lambda: certificate_from_der(der)) == code


def test_der_with_trailing_bytes_is_invalid(pki: MtlsPki) -> None:
    assert code_of(lambda: certificate_from_der(pki.client.der + b"\x00")) == (
        "client_certificate_invalid"
    )


def test_pem_leaf_and_chain(pki: MtlsPki) -> None:
    assert certificate_from_pem(pki.client.pem).der == pki.client.der
    chain = certificate_from_pem(pki.chained_client.pem + pki.intermediate.pem)
    assert chain.der == pki.chained_client.der
    assert chain.chain == (pki.intermediate.der,)


def test_pem_with_line_breaks_folded_into_spaces(pki: MtlsPki) -> None:
    folded = pki.client.pem.replace("\n", " ")
    assert certificate_from_pem(folded).der == pki.client.der


@pytest.mark.parametrize("value", ["", "   ", "(null)"])
def test_pem_absent(value: str) -> None:
    assert code_of(lambda: certificate_from_pem(value)) == "client_certificate_missing"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda pem: "garbage " + pem,
        lambda pem: pem + "trailing",
        lambda pem: pem.replace("CERTIFICATE", "PRIVATE KEY"),
        lambda pem: pem.replace("-----END CERTIFICATE-----", ""),
        lambda pem: pem[:40] + "!" + pem[41:],  # not base64
        lambda pem: pem[:40] + pem[44:],  # base64 of the wrong length
        lambda pem: pem.replace("MII", "MIJ", 1),  # base64, not DER of a certificate
    ],
)
def test_malformed_pem_is_invalid(pki: MtlsPki, spoil: Callable[[str], str]) -> None:
    assert code_of(lambda: certificate_from_pem(spoil(pki.client.pem))) == (
        "client_certificate_invalid"
    )


def test_pem_chain_bound(pki: MtlsPki) -> None:
    assert len(certificate_from_pem(pki.client.pem * MAX_CHAIN_ENTRIES).chain) == (
        MAX_CHAIN_ENTRIES - 1
    )
    too_long = pki.client.pem * (MAX_CHAIN_ENTRIES + 1)
    assert code_of(lambda: certificate_from_pem(too_long)) == "client_certificate_invalid"


# --- URL-encoded PEM: Envoy peer, nginx -----------------------------------------------------


def test_escaped_pem_as_envoy_and_nginx_write_it(pki: MtlsPki) -> None:
    envoy_style = escaped(pki.client.pem)
    assert certificate_from_envoy_peer(envoy_style).der == pki.client.der
    # nginx leaves '+', '/' and '=' alone; '+' stays a base64 character, never a space.
    nginx_style = urllib.parse.quote(pki.client.pem, safe="+/=")
    assert certificate_from_escaped_pem(nginx_style).der == pki.client.der


@pytest.mark.parametrize("value", ["", "(null)"])
def test_envoy_peer_without_certificate_is_missing(value: str) -> None:
    assert code_of(lambda: certificate_from_envoy_peer(value)) == "client_certificate_missing"


@pytest.mark.parametrize(
    "value",
    [
        "%ff%fe",  # not UTF-8 once decoded
        "-----BEGIN%20CERTIFICATE-----%0Azzzz%0A-----END%20CERTIFICATE-----",
        "x" * (MAX_CERTIFICATE_CHARS * 3 + 1),
        "%41",  # decodes to "A": no PEM block
    ],
)
def test_malformed_escaped_pem_is_invalid(value: str) -> None:
    assert code_of(lambda: certificate_from_escaped_pem(value)) == "client_certificate_invalid"


# --- Traefik, RFC 9440, the header dispatch --------------------------------------------------


def test_traefik_leaf_first_chain_and_old_url_escaping(pki: MtlsPki) -> None:
    assert certificate_from_traefik(b64(pki.client.der)).der == pki.client.der
    joined = f"{b64(pki.chained_client.der)},{b64(pki.intermediate.der)}"
    chain = certificate_from_traefik(joined)
    assert (chain.der, chain.chain) == (pki.chained_client.der, (pki.intermediate.der,))
    old = urllib.parse.quote(joined, safe="")
    assert certificate_from_traefik(old).chain == (pki.intermediate.der,)


@pytest.mark.parametrize(
    "make",
    [
        lambda der: "_" + b64(der)[1:],  # a base64url character
        lambda der: b64(der)[:-2],  # padding dropped
        lambda der: "-----BEGIN CERTIFICATE-----" + b64(der),  # armour left in
        lambda der: ",".join([b64(der)] * (MAX_CHAIN_ENTRIES + 1)),  # too many entries
        lambda der: b64(der) + ",",  # an empty entry
        lambda der: b64(der[:-1]),  # truncated DER
    ],
)
def test_malformed_traefik_is_invalid(pki: MtlsPki, make: Callable[[bytes], str]) -> None:
    value = make(pki.client.der)
    assert code_of(lambda: certificate_from_traefik(value)) == "client_certificate_invalid"


@pytest.mark.parametrize("value", ["", "(null)", "  (null) "])
def test_traefik_absent(value: str) -> None:
    assert code_of(lambda: certificate_from_traefik(value)) == "client_certificate_missing"


def test_rfc9440_byte_sequence(pki: MtlsPki) -> None:
    value = f":{b64(pki.self_signed.der)}:"
    assert certificate_from_rfc9440(value).der == pki.self_signed.der
    assert certificate_from_rfc9440(f" {value}\t").der == pki.self_signed.der


@pytest.mark.parametrize(
    "make",
    [
        lambda der: b64(der),  # no colons
        lambda der: f":{b64(der)}",
        lambda der: f":{b64(der)}:;param=1",  # parameters: none are defined
        lambda der: f":{base64.urlsafe_b64encode(der).decode()}:".replace("=", ""),
        lambda der: "::",  # an empty byte sequence
        lambda der: f":{b64(der)}:, :{b64(der)}:",  # a list, not an item
    ],
)
def test_malformed_rfc9440_is_invalid(pki: MtlsPki, make: Callable[[bytes], str]) -> None:
    value = make(pki.client.der)
    assert code_of(lambda: certificate_from_rfc9440(value)) == "client_certificate_invalid"


def test_header_dispatch_by_declared_format(pki: MtlsPki) -> None:
    values = {
        "escaped-pem": escaped(pki.client.pem),
        "traefik": b64(pki.client.der),
        "rfc9440": f":{b64(pki.client.der)}:",
        "pem": pki.client.pem.replace("\n", " "),
    }
    for header_format, value in values.items():
        assert certificate_from_header(value, header_format).der == pki.client.der
        assert code_of(lambda f=header_format: certificate_from_header(None, f)) == (
            "client_certificate_missing"
        )
        assert code_of(lambda f=header_format: certificate_from_header("(null)", f)) == (
            "client_certificate_missing"
        )
    # A value in another format than the declared one is not guessed at.
    assert code_of(lambda: certificate_from_header(values["traefik"], "rfc9440")) == (
        "client_certificate_invalid"
    )
    with pytest.raises(ValueError, match="unknown client certificate header format"):
        certificate_from_header(values["pem"], "der")


# --- x-forwarded-client-cert -------------------------------------------------------------------


def xfcc_element(pem: str | None = None, *, by: str = PROXY_URI, digest: str | None = None,
                 extra: str = 'Subject="CN=client-1,O=Test \\"Quoted\\""') -> str:  # fmt: skip
    """One element as Envoy writes it (SANITIZE_SET with cert, hash and subject)."""
    parts = [f"By={by}"]
    if digest is not None:
        parts.append(f"Hash={digest}")
    if pem is not None:
        parts.append(f'Cert="{escaped(pem)}"')
    parts += [extra, "URI=spiffe://dpop.test/client-1", "DNS=a.test", "DNS=b.test"]
    return ";".join(parts)


def test_parse_xfcc_pairs_quotes_and_escapes() -> None:
    header = 'By=spiffe://a;Subject="CN=x, O=\\"y\\";z";DNS=a;DNS=b, By=spiffe://b;Hash=00'
    assert parse_xfcc(header) == (
        (("By", "spiffe://a"), ("Subject", 'CN=x, O="y";z'), ("DNS", "a"), ("DNS", "b")),
        (("By", "spiffe://b"), ("Hash", "00")),
    )


@pytest.mark.parametrize(
    "header",
    [
        'By=a;Subject="unterminated',
        "By=a;;Hash=00",
        "=value",
        'By="a"b',  # text after the closing quote
        "By=a,",  # an empty element
        "no pairs here",
        "x" * (MAX_XFCC_CHARS + 1),
        ",".join(["By=a"] * (MAX_XFCC_ELEMENTS + 1)),
    ],
)
def test_malformed_xfcc_is_invalid(header: str) -> None:
    assert code_of(lambda: parse_xfcc(header)) == "client_certificate_invalid"
    assert code_of(lambda: certificate_from_xfcc(header, TRUSTED)) == "client_certificate_invalid"


def test_xfcc_from_the_trusted_proxy(pki: MtlsPki) -> None:
    digest = hashlib.sha256(pki.client.der).hexdigest()
    certificate = certificate_from_xfcc(xfcc_element(pki.client.pem, digest=digest), TRUSTED)
    assert certificate.der == pki.client.der


def test_xfcc_takes_the_last_trusted_element_not_the_first(pki: MtlsPki) -> None:
    forged = xfcc_element(pki.other_client.pem)  # sent by the client, claiming the proxy's By
    real = xfcc_element(pki.client.pem)
    later_untrusted = xfcc_element(pki.self_signed.pem, by="spiffe://dpop.test/other")
    header = f"{forged},{real},{later_untrusted}"
    assert certificate_from_xfcc(header, TRUSTED).der == pki.client.der


@pytest.mark.parametrize(
    "element",
    [
        lambda pem: xfcc_element(pem, by="spiffe://dpop.test/someone-else"),
        lambda pem: xfcc_element(pem).replace(f"By={PROXY_URI};", ""),  # no By at all
        lambda pem: f"By={PROXY_URI};" + xfcc_element(pem, by="spiffe://x"),  # two By
        lambda pem: xfcc_element(pem, by=PROXY_URI.upper()),  # By compares exactly
    ],
)
def test_xfcc_without_a_trusted_element_is_untrusted(
    pki: MtlsPki, element: Callable[[str], str]
) -> None:
    header = element(pki.client.pem)
    assert code_of(lambda: certificate_from_xfcc(header, TRUSTED)) == (
        "client_certificate_untrusted"
    )
    assert code_of(lambda: certificate_from_xfcc(header, frozenset())) == (
        "client_certificate_untrusted"
    )


def test_xfcc_hash_only_is_hex_sha256(pki: MtlsPki) -> None:
    digest = hashlib.sha256(pki.client.der).hexdigest()
    for spelling in (digest, digest.upper()):
        certificate = certificate_from_xfcc(xfcc_element(digest=spelling), TRUSTED)
        assert (certificate.sha256, certificate.der) == (bytes.fromhex(digest), None)


@pytest.mark.parametrize(
    "spelling",
    [
        lambda d: base64.b64encode(d).decode(),  # base64: not Envoy's encoding
        lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),  # the x5t#S256 spelling
        lambda d: d.hex()[:-2],  # 31 bytes
        lambda d: d.hex() + "00",  # 33 bytes
        lambda d: "zz" + d.hex()[2:],
    ],
)
def test_xfcc_hash_in_another_spelling_is_invalid(
    pki: MtlsPki, spelling: Callable[[bytes], str]
) -> None:
    digest = spelling(hashlib.sha256(pki.client.der).digest())
    header = xfcc_element(digest=digest)
    with pytest.raises(CertificateError) as caught:
        certificate_from_xfcc(header, TRUSTED)
    assert caught.value.code == "client_certificate_invalid"
    assert "hex" in str(caught.value)


def test_xfcc_hash_and_cert_must_agree(pki: MtlsPki) -> None:
    other = hashlib.sha256(pki.other_client.der).hexdigest()
    header = xfcc_element(pki.client.pem, digest=other)
    assert code_of(lambda: certificate_from_xfcc(header, TRUSTED)) == "client_certificate_invalid"


def test_xfcc_chain_supplies_intermediates(pki: MtlsPki) -> None:
    chain = escaped(pki.chained_client.pem + pki.intermediate.pem)
    header = xfcc_element(pki.chained_client.pem, extra=f'Chain="{chain}"')
    certificate = certificate_from_xfcc(header, TRUSTED)
    assert certificate.chain == (pki.intermediate.der,)
    wrong = escaped(pki.client.pem + pki.intermediate.pem)  # does not start with Cert=
    header = xfcc_element(pki.chained_client.pem, extra=f'Chain="{wrong}"')
    assert code_of(lambda: certificate_from_xfcc(header, TRUSTED)) == "client_certificate_invalid"


def test_xfcc_absent_or_without_certificate_is_missing() -> None:
    assert code_of(lambda: certificate_from_xfcc("", TRUSTED)) == "client_certificate_missing"
    header = f"By={PROXY_URI};URI=spiffe://dpop.test/client-1"
    assert code_of(lambda: certificate_from_xfcc(header, TRUSTED)) == "client_certificate_missing"


def test_trusted_by_set_drops_blanks() -> None:
    assert trusted_by_set(["spiffe://a", " ", " spiffe://b "]) == {"spiffe://a", "spiffe://b"}


# --- Cache ----------------------------------------------------------------------------------


def test_the_same_value_is_parsed_once(pki: MtlsPki) -> None:
    value = escaped(pki.other_client.pem)
    before = certificate_from_escaped_pem.cache_info()
    first = certificate_from_escaped_pem(value)
    second = certificate_from_escaped_pem(value)
    after = certificate_from_escaped_pem.cache_info()
    assert first is second
    assert after.hits == before.hits + 1
    assert after.maxsize == CACHE_ENTRIES


# --- The optional CA-chain policy -------------------------------------------------------------


def test_chain_policy(pki: MtlsPki) -> None:
    now = datetime.datetime.now(datetime.UTC)
    roots = load_trust_roots(pki.ca.cert_file.read_bytes())
    other_roots = load_trust_roots(pki.other_ca.cert_file.read_bytes())
    check_chain(certificate_from_pem(pki.client.pem), roots, now)
    with_intermediate = certificate_from_pem(pki.chained_client.pem + pki.intermediate.pem)
    check_chain(with_intermediate, roots, now)

    untrusted = [
        (certificate_from_pem(pki.self_signed.pem), roots, now),
        (certificate_from_pem(pki.chained_client.pem), roots, now),  # intermediate not sent
        (certificate_from_pem(pki.client.pem), other_roots, now),
        (certificate_from_pem(pki.client.pem), roots, now + datetime.timedelta(days=1)),  # expired
        (certificate_from_xfcc(xfcc_element(digest=hashlib.sha256(pki.client.der).hexdigest()),
                               TRUSTED), roots, now),  # only a hash
    ]  # fmt: skip
    for certificate, store, at in untrusted:
        assert code_of(lambda c=certificate, s=store, t=at: check_chain(c, s, t)) == (
            "client_certificate_untrusted"
        )


def test_trust_roots_must_hold_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_trust_roots(b"no certificates here")


# --- Never another exception, never a hang -----------------------------------------------------

DECODERS: list[Callable[[str], object]] = [
    certificate_from_pem,
    certificate_from_escaped_pem,
    certificate_from_traefik,
    certificate_from_rfc9440,
    lambda value: certificate_from_xfcc(value, TRUSTED),
]
TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet='By=Hash;Cert",\\ :%0A+/-(null)', max_size=300),
    st.from_regex(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/= ]{0,200}-----END CERTIFICATE-----"),
)


@settings(max_examples=150, deadline=None)
@given(value=TEXT)
def test_arbitrary_text_gives_a_certificate_error_or_a_certificate(value: str) -> None:
    for decode in DECODERS:
        try:
            decode(value)
        except CertificateError as exc:
            assert exc.code in CERTIFICATE_ERROR_CODES
