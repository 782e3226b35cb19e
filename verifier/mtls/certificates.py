"""Client certificates as the verifier receives them: the leaf's DER and its SHA-256.

Every decoder here takes the text a proxy forwarded, in the one format the operator declared,
and returns a :class:`ClientCertificate` or raises :class:`CertificateError` with one of
:data:`CERTIFICATE_ERROR_CODES`. Nothing here does I/O or reads the clock; every input is
bounded (:data:`MAX_CERTIFICATE_CHARS`, :data:`MAX_XFCC_CHARS`, :data:`MAX_XFCC_ELEMENTS`,
:data:`MAX_CHAIN_ENTRIES`) and parsed in linear time.

Caching: the same client presents the same certificate on every request, so each decoder keeps
the result for its last :data:`CACHE_ENTRIES` distinct input values (a least-recently-used
cache per decoder; failures are not cached). The worst case is ``CACHE_ENTRIES`` times the
decoder's input bound per decoder, about 8 MiB for the 16 KiB certificate values and 32 MiB
for XFCC headers; real certificates are one to two KiB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

CertificateErrorCode = Literal[
    "client_certificate_missing",
    "client_certificate_invalid",
    "client_certificate_mismatch",
    "client_certificate_untrusted",
]
CERTIFICATE_ERROR_CODES: tuple[CertificateErrorCode, ...] = (
    "client_certificate_missing",
    "client_certificate_invalid",
    "client_certificate_mismatch",
    "client_certificate_untrusted",
)
"""``missing``: no certificate reached the verifier. ``invalid``: what arrived is not a
certificate in the declared format (or exceeds a size bound). ``mismatch``: the token is bound to
another certificate, or its ``cnf`` thumbprint is malformed. ``untrusted``: the certificate came
from a proxy that is not trusted, or fails the optional CA-chain policy."""

MAX_CERTIFICATE_CHARS = 16 * 1024
"""Largest certificate value accepted, in characters (encoded) or bytes (DER)."""
MAX_XFCC_CHARS = 64 * 1024
"""Largest ``x-forwarded-client-cert`` header accepted."""
MAX_XFCC_ELEMENTS = 16
"""Most XFCC elements (one per proxy hop) accepted."""
MAX_CHAIN_ENTRIES = 8
"""Most certificates in a forwarded chain (leaf included)."""
CACHE_ENTRIES = 512
"""Distinct input values each decoder remembers (see the module docstring)."""

HEADER_FORMATS = ("escaped-pem", "traefik", "rfc9440", "pem")
"""The declared formats of a named client-certificate header (``DPOP_HTTP_CLIENT_CERT_FORMAT``):
``escaped-pem``: URL-encoded PEM, nginx ``$ssl_client_escaped_cert``; ``traefik``: Traefik's
``X-Forwarded-Tls-Client-Cert``, base64 DER without armour, a comma-joined chain with the leaf
first, URL-escaped by older versions; ``rfc9440``: ``Client-Cert: :base64-DER:`` (RFC 9440
§2.2); ``pem``: plain PEM, line breaks possibly folded into spaces. In every format an empty
value or Apache's literal ``(null)`` means no certificate."""

_ABSENT = frozenset({"", "(null)"})
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----")
_PEM_OUTSIDE = re.compile(r"\s*")
_STD_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# One XFCC pair: key, then a quoted value (backslash escapes) or a bare one, then its separator.
_XFCC_PAIR = re.compile(r'([A-Za-z]+)=(?:"((?:[^"\\]|\\.)*)"|([^;,"]*))(;|,|\Z)', re.DOTALL)
_XFCC_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


class CertificateError(ValueError):
    """A client certificate that cannot be used: ``code`` (one of
    :data:`CERTIFICATE_ERROR_CODES`) says why, the message says precisely what (it never
    contains the certificate)."""

    def __init__(self, code: CertificateErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: CertificateErrorCode = code


def _missing(message: str) -> CertificateError:
    return CertificateError("client_certificate_missing", message)


def _invalid(message: str) -> CertificateError:
    return CertificateError("client_certificate_invalid", message)


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The client's leaf certificate, as far as the binding needs it."""

    sha256: bytes
    """SHA-256 over the leaf's DER: what ``cnf["x5t#S256"]`` names (RFC 8705 §3.1)."""
    der: bytes | None
    """The leaf's DER, or ``None`` when a trusted proxy forwarded only its hash (XFCC
    ``Hash=``)."""
    chain: tuple[bytes, ...] = ()
    """DER of the certificates forwarded after the leaf (intermediates), when the format
    carries a chain; used only by the optional CA-chain policy."""


# --- DER and PEM -------------------------------------------------------------------------


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_der(der: bytes) -> ClientCertificate:
    """The certificate whose DER is ``der``; any X.509 certificate parses, self-signed ones
    included (RFC 8705 §2.2)."""
    if not der:
        raise _missing("empty certificate")
    if len(der) > MAX_CERTIFICATE_CHARS:
        raise _invalid(f"certificate larger than {MAX_CERTIFICATE_CHARS} bytes")
    _parse_der(der)
    return ClientCertificate(sha256=hashlib.sha256(der).digest(), der=der)


def _parse_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise _invalid("not a DER X.509 certificate") from None


def _pem_blocks(text: str) -> list[bytes]:
    """The DER of each ``CERTIFICATE`` block of ``text``; nothing but whitespace may sit
    between or around the blocks."""
    blocks: list[bytes] = []
    position = 0
    for match in _PEM_BLOCK.finditer(text):
        if not _PEM_OUTSIDE.fullmatch(text, position, match.start()):
            raise _invalid("text outside the PEM certificate blocks")
        if len(blocks) == MAX_CHAIN_ENTRIES:
            raise _invalid(f"more than {MAX_CHAIN_ENTRIES} certificates in the chain")
        blocks.append(_strict_b64("".join(match.group(1).split()), "PEM certificate"))
        position = match.end()
    if not blocks:
        raise _invalid("no PEM certificate block")
    if not _PEM_OUTSIDE.fullmatch(text, position):
        raise _invalid("text outside the PEM certificate blocks")
    return blocks


def _strict_b64(value: str, what: str) -> bytes:
    """Standard padded base64 (RFC 4648 §4) of at least one byte, nothing else."""
    if not value or not _STD_B64.fullmatch(value):
        raise _invalid(f"{what} is not padded standard base64")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _invalid(f"{what} is not padded standard base64") from None


def _from_chain(ders: list[bytes]) -> ClientCertificate:
    leaf = certificate_from_der(ders[0])
    return ClientCertificate(leaf.sha256, leaf.der, tuple(ders[1:]))


def _bounded(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise _invalid(f"{what} longer than {limit} characters")
    return value


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_pem(text: str) -> ClientCertificate:
    """The leaf (first block) of a PEM certificate or chain; line breaks inside the base64
    may be any whitespace (some proxies fold them into spaces)."""
    if text.strip() in _ABSENT:
        raise _missing("no client certificate")
    _bounded(text, MAX_CERTIFICATE_CHARS * MAX_CHAIN_ENTRIES, "PEM chain")
    blocks = _pem_blocks(text)
    if len(blocks[0]) > MAX_CERTIFICATE_CHARS:
        raise _invalid(f"certificate larger than {MAX_CERTIFICATE_CHARS} bytes")
    return _from_chain(blocks)


def _url_decode(value: str, what: str) -> str:
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise _invalid(f"{what} is not URL-encoded UTF-8") from None


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_escaped_pem(value: str) -> ClientCertificate:
    """URL-encoded PEM: Envoy's ext_authz ``attributes.source.certificate``, nginx's
    ``$ssl_client_escaped_cert``, XFCC ``Cert=``. ``+`` is a base64 character here, never a
    space."""
    if value.strip() in _ABSENT:
        raise _missing("no client certificate")
    _bounded(value, MAX_CERTIFICATE_CHARS * 3, "URL-encoded certificate")
    return certificate_from_pem(_url_decode(value, "certificate"))


# --- Named headers for forward auth ------------------------------------------------------


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_traefik(value: str) -> ClientCertificate:
    """Traefik's ``X-Forwarded-Tls-Client-Cert``: base64 DER of each certificate, without PEM
    armour, comma-joined with the leaf first; older versions URL-escape the whole value."""
    value = value.strip()
    if value in _ABSENT:
        raise _missing("no client certificate")
    _bounded(value, MAX_CERTIFICATE_CHARS * MAX_CHAIN_ENTRIES, "Traefik certificate header")
    if "%" in value:
        value = _url_decode(value, "Traefik certificate header")
    entries = value.split(",")
    if len(entries) > MAX_CHAIN_ENTRIES:
        raise _invalid(f"more than {MAX_CHAIN_ENTRIES} certificates in the chain")
    ders = [_strict_b64(entry.strip(), "Traefik certificate") for entry in entries]
    return _from_chain(ders)


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_rfc9440(value: str) -> ClientCertificate:
    """RFC 9440 ``Client-Cert``: a structured-field byte sequence (RFC 8941 §3.3.5) holding the
    leaf's DER, ``:base64:``, with no parameters."""
    value = value.strip(" \t")
    if value in _ABSENT:
        raise _missing("no client certificate")
    _bounded(value, MAX_CERTIFICATE_CHARS * 2, "Client-Cert")
    if len(value) < 2 or value[0] != ":" or value[-1] != ":":
        raise _invalid("Client-Cert is not a byte sequence (:base64:)")
    der = _strict_b64(value[1:-1], "Client-Cert")
    if not der:
        raise _invalid("Client-Cert is an empty byte sequence")
    return certificate_from_der(der)


def certificate_from_header(value: str | None, header_format: str) -> ClientCertificate:
    """The certificate in a named header of ``header_format`` (one of
    :data:`HEADER_FORMATS`); ``None`` (header absent), ``""`` and ``(null)`` mean none."""
    if value is None:
        raise _missing("no client certificate header")
    if header_format == "escaped-pem":
        return certificate_from_escaped_pem(value)
    if header_format == "traefik":
        return certificate_from_traefik(value)
    if header_format == "rfc9440":
        return certificate_from_rfc9440(value)
    if header_format == "pem":
        return certificate_from_pem(value)
    raise ValueError(f"unknown client certificate header format {header_format!r}")


def certificate_from_envoy_peer(value: str) -> ClientCertificate:
    """Envoy ext_authz ``CheckRequest.attributes.source.certificate``: the URL-encoded PEM of
    the leaf, empty when the client sent none (or ``include_peer_certificate`` is off)."""
    return certificate_from_escaped_pem(value)


# --- Envoy / Istio x-forwarded-client-cert -----------------------------------------------

XfccElement = tuple[tuple[str, str], ...]
"""One XFCC element: its ``key=value`` pairs in order (values unquoted and unescaped)."""


def parse_xfcc(header: str) -> tuple[XfccElement, ...]:
    """The elements of an ``x-forwarded-client-cert`` value, as Envoy writes it: elements
    separated by ``,``, pairs by ``;``, each ``Key=value`` with the value bare or in double
    quotes (``\\"`` and ``\\\\`` escaped inside). Raises ``client_certificate_invalid`` for
    anything else, or beyond :data:`MAX_XFCC_CHARS` / :data:`MAX_XFCC_ELEMENTS`."""
    _bounded(header, MAX_XFCC_CHARS, "x-forwarded-client-cert")
    elements: list[XfccElement] = []
    pairs: list[tuple[str, str]] = []
    position = 0
    while True:
        while position < len(header) and header[position] in " \t":
            position += 1
        match = _XFCC_PAIR.match(header, position)
        if match is None:
            raise _invalid(f"malformed x-forwarded-client-cert at character {position}")
        key, quoted, bare, separator = match.groups()
        value = _XFCC_UNESCAPE.sub(r"\1", quoted) if quoted is not None else bare.strip(" \t")
        pairs.append((key, value))
        position = match.end()
        if separator != ";":
            elements.append(tuple(pairs))
            pairs = []
            if len(elements) > MAX_XFCC_ELEMENTS:
                raise _invalid(f"more than {MAX_XFCC_ELEMENTS} x-forwarded-client-cert elements")
        if separator == "":
            return tuple(elements)


def _one(element: XfccElement, key: str) -> str | None:
    values = [value for name, value in element if name == key]
    if len(values) > 1:
        raise _invalid(f"x-forwarded-client-cert element with {len(values)} {key}= values")
    return values[0] if values else None


def _added_by(element: XfccElement) -> str | None:
    """The element's one ``By=``; ``None`` when it has none or several (never trusted)."""
    values = [value for name, value in element if name == "By"]
    return values[0] if len(values) == 1 else None


def _xfcc_hash(value: str) -> bytes:
    if not _HEX_SHA256.fullmatch(value):
        raise _invalid("XFCC Hash= is not hex SHA-256 (64 hex digits; base64 is not Envoy's)")
    return bytes.fromhex(value)


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def certificate_from_xfcc(header: str, trusted_by: frozenset[str]) -> ClientCertificate:
    """The client certificate in the element a trusted proxy added to ``header``.

    The element chosen is the last one whose ``By=`` is in ``trusted_by`` (each hop appends
    its element, so anything before it may come from the client). Its ``Cert=`` (URL-encoded
    PEM) gives the DER; its ``Hash=`` (hex SHA-256 of the DER) is accepted alone and must agree
    with ``Cert=`` when both are present. ``Chain=`` (URL-encoded PEM, leaf first) supplies
    intermediates for the CA-chain policy.
    """
    if not header.strip():
        raise _missing("no x-forwarded-client-cert")
    elements = parse_xfcc(header)
    chosen = [element for element in elements if _added_by(element) in trusted_by]
    if not chosen:
        raise CertificateError(
            "client_certificate_untrusted",
            "no x-forwarded-client-cert element was added by a trusted proxy (By=)",
        )
    element = chosen[-1]
    cert, digest, chain = _one(element, "Cert"), _one(element, "Hash"), _one(element, "Chain")
    if cert is None:
        if digest is None:
            raise _missing("the trusted x-forwarded-client-cert element has no Cert= or Hash=")
        return ClientCertificate(sha256=_xfcc_hash(digest), der=None)
    leaf = certificate_from_escaped_pem(cert)
    if digest is not None and not hmac.compare_digest(_xfcc_hash(digest), leaf.sha256):
        raise _invalid("XFCC Hash= is not the SHA-256 of Cert=")
    intermediates = _xfcc_chain(chain, leaf) if chain is not None else ()
    return ClientCertificate(leaf.sha256, leaf.der, intermediates)


def _xfcc_chain(chain: str, leaf: ClientCertificate) -> tuple[bytes, ...]:
    ders = _pem_blocks(_url_decode(_bounded(chain, MAX_XFCC_CHARS, "Chain="), "Chain="))
    if not hmac.compare_digest(hashlib.sha256(ders[0]).digest(), leaf.sha256):
        raise _invalid("XFCC Chain= does not start with Cert=")
    return tuple(ders[1:])


def trusted_by_set(values: Iterable[str]) -> frozenset[str]:
    """The ``By=`` allow-list as the XFCC decoder takes it (empty entries dropped)."""
    return frozenset(value.strip() for value in values if value.strip())
