"""Mutual-TLS end-to-end helpers: the mTLS examples rendered with only their placeholders filled,
HTTPS requests with (or without) a client certificate, and certificate-bound tokens.

``examples/envoy-mtls/envoy.yaml`` and ``envoy-xfcc.yaml`` run in :class:`EnvoyProcess`;
``examples/nginx-mtls/nginx.conf`` runs in :class:`NginxMtlsProcess`, a
:class:`~tests.support.gateways.GatewayProcess` that puts the server's certificate and key
where the example reads them (``${PREFIX}/tls``).
"""

from __future__ import annotations

import http.client
import secrets
import shutil
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.envoy import EnvoyProcess
from tests.support.gateways import EXAMPLES, Gateway, GatewayProcess
from tests.support.http_requests import HOST, Reply
from tests.support.mtls_pki import Identity, MtlsPki
from tests.support.service import TestIssuer
from verifier.cli.mint import KeyPair, make_proof
from verifier.mtls import x5t_s256

ENVOY_MTLS = EXAMPLES / "envoy-mtls" / "envoy.yaml"
ENVOY_XFCC = EXAMPLES / "envoy-mtls" / "envoy-xfcc.yaml"
NGINX_MTLS = Gateway("nginx", "nginx", EXAMPLES / "nginx-mtls" / "nginx.conf", "nginx.conf")

CLIENT_CERT_HEADER = "x-client-cert"
"""The header examples/nginx-mtls/nginx.conf fills with ``$ssl_client_escaped_cert``."""


def render(template: Path, values: Mapping[str, str]) -> str:
    """``template`` with every ``${NAME}`` of ``values`` replaced; a verifier endpoint line is
    kept once (one replica). Raises ``ValueError`` when a placeholder outside comments is left."""
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if "${" in body:
        raise ValueError(f"unfilled placeholder in {template.name}")
    return text


def envoy_values(pki: MtlsPki, verifier: str, app: tuple[str, int], **extra: str) -> dict[str, str]:
    """The placeholder values of the Envoy mTLS examples (ports 0: Envoy picks them)."""
    host, _, port = verifier.rpartition(":")
    return {
        "ADMIN_PORT": "0",
        "LISTEN_PORT": "0",
        "SERVER_CERT_FILE": str(pki.server.cert_file),
        "SERVER_KEY_FILE": str(pki.server.key_file),
        "CLIENT_CA_FILE": str(pki.ca.cert_file),
        "APP_HOST": app[0],
        "APP_PORT": str(app[1]),
        "VERIFIER_HOST": host.strip("[]"),
        "VERIFIER_PORT": port,
        **extra,
    }


def start_envoy(template: Path, values: Mapping[str, str]) -> EnvoyProcess:
    """Envoy running ``template`` rendered with ``values``."""
    return EnvoyProcess(render(template, values))


class NginxMtlsProcess(GatewayProcess):
    """NGINX running examples/nginx-mtls/nginx.conf, with ``pki``'s server certificate and key
    copied to ``${PREFIX}/tls`` before each start."""

    def __init__(self, pki: MtlsPki, verifier: str, app: tuple[str, int]) -> None:
        self._pki = pki
        super().__init__(NGINX_MTLS, verifier, app)

    def _launch(self, attempt: int) -> None:
        tls = self.prefix / "tls"
        tls.mkdir(exist_ok=True)
        shutil.copyfile(self._pki.server.cert_file, tls / "server.pem")
        shutil.copyfile(self._pki.server.key_file, tls / "server.key")
        (tls / "server.key").chmod(0o600)
        super()._launch(attempt)


def tls_context(ca_file: Path, client: Identity | None) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` and presenting ``client``'s certificate."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if client is not None:
        context.load_cert_chain(str(client.cert_file), str(client.key_file))
    return context


def send_tls(
    address: tuple[str, int],
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    ca_file: Path,
    client: Identity | None,
    method: str = "GET",
) -> Reply:
    """One HTTPS/1.1 request to ``address`` (its certificate is checked against ``ca_file``),
    presenting ``client``'s certificate (none when ``None``); ``Host: api.test`` and a fresh
    ``traceparent`` as in :func:`tests.support.http_requests.send`."""
    trace_id = secrets.token_hex(16)
    connection = http.client.HTTPSConnection(
        *address, timeout=10, context=tls_context(ca_file, client)
    )
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("host", HOST)
        connection.putheader("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read(), trace_id)
    finally:
        connection.close()


def https_dpop_headers(
    client: KeyPair, token: str, method: str, path: str
) -> list[tuple[str, str]]:
    """``Authorization: DPoP`` and a fresh proof for ``method https://api.test{path}``."""
    proof = make_proof(client, method, f"https://{HOST}{path}", access_token=token)
    return [("authorization", f"DPoP {token}"), ("dpop", proof)]


def bearer(token: str) -> list[tuple[str, str]]:
    """``Authorization: Bearer``: how a certificate-bound token travels (RFC 8705 §3)."""
    return [("authorization", f"Bearer {token}")]


def certificate_bound_token(
    issuer: TestIssuer, certificate: Identity, *, dpop_key: KeyPair | None = None, **kwargs: Any
) -> str:
    """An access token whose ``cnf`` names ``certificate`` (``x5t#S256``, RFC 8705 §3.1), and
    also ``dpop_key`` (``jkt``) when given: a token bound both ways."""
    cnf = {"x5t#S256": x5t_s256(certificate.der)}
    if dpop_key is not None:
        cnf["jkt"] = dpop_key.jkt
    return issuer.token(None, extra={"cnf": cnf}, **kwargs)
