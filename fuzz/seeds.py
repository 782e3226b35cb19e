"""Write the seed corpus: ``python -m fuzz.seeds`` (then review and commit ``fuzz/corpus/``).

Seeds are real inputs: proofs and tokens made with :mod:`verifier.cli.mint` at
:data:`~fuzz.fixtures.NOW`, the RFC 9449 and RFC 7638 examples of
``tests/fixtures/rfc9449-vectors.json``, ``CheckRequest`` messages as Envoy sends them (see
``bench/_load.py``) and configurations from the README and ``docs/``. Proofs signed with the
fixed client key and the fixed token come out identical on every run; those signed with the
freshly generated EC and RSA keys change, which is why the written files are committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fuzz.fixtures import (
    AUDIENCE,
    CLIENT_KEY,
    ISSUER,
    ISSUER_KEY,
    ISSUER_KID,
    NONCE_KEYS,
    NOW,
    RESOURCE_URL,
    TOKEN,
)
from fuzz.harnesses.config import ISSUER_ENV_VARIABLE
from verifier._generated.envoy.config.core.v3 import address_pb2, base_pb2
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attributes_pb
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as extauthz_pb
from verifier.cli import mint
from verifier.config import OPTIONS
from verifier.dpop.nonce import NonceKeys, issue_nonce

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
VECTORS = json.loads((ROOT / "tests" / "fixtures" / "rfc9449-vectors.json").read_text())
RFC_PROOFS = {
    name: entry for name, entry in VECTORS["proofs"].items() if "identical_to" not in entry
}
Seeds = Iterator[tuple[str, bytes]]


def _proof(key: mint.KeyPair, method: str = "GET", url: str = RESOURCE_URL, **kw: Any) -> str:
    kw.setdefault("access_token", TOKEN)
    return mint.make_proof(key, method, url, iat=NOW, jti=kw.pop("jti", "fuzz-proof-1"), **kw)


def _token(**kw: Any) -> str:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "jkt": CLIENT_KEY.jkt,
        "audience": AUDIENCE,
        "now": NOW,
        "kid": ISSUER_KID,
        "extra": {"jti": "fuzz-token-2"},
    }
    fields.update(kw)
    return mint.make_access_token(ISSUER_KEY, **fields)


def proof_seeds() -> Seeds:
    request = f"GET {RESOURCE_URL}\n"
    yield "eddsa-bound", (request + _proof(CLIENT_KEY)).encode()
    nonce = issue_nonce(NONCE_KEYS, NOW)
    yield "eddsa-nonce", (request + _proof(CLIENT_KEY, nonce=nonce)).encode()
    for alg in ("ES256", "ES384", "ES512", "PS256", "RS384", "Ed448"):
        yield alg.lower(), (request + _proof(mint.generate_key(alg))).encode()
    url = "HTTPS://API.example.com:443/orders/./42?page=2#top"
    yield "htu-normalized", (f"POST {url}\n" + _proof(CLIENT_KEY, "POST", url)).encode()
    token_request = f"POST {url}\n" + _proof(CLIENT_KEY, "POST", url, access_token=None)
    yield "proof-only", token_request.encode()
    proof = _proof(CLIENT_KEY)
    yield "two-values", f"{request}{proof}\n{proof}".encode()
    yield "comma-joined", f"{request}{proof}, {proof}".encode()
    for name, entry in RFC_PROOFS.items():
        # Figure 7 repeats figure 2's request.
        method, target = (
            entry.get("htm", "POST"),
            entry.get("htu", "https://server.example.com/token"),
        )
        yield name, f"{method} {target}\n{entry['jwt']}".encode()


def jwk_seeds() -> Seeds:
    yield "rfc9449-proof-jwk", json.dumps(VECTORS["proof_jwk"]).encode()
    yield "rfc7638-rsa", json.dumps(VECTORS["rfc7638_sec3.1"]["jwk"]).encode()
    for alg in ("ES256", "ES384", "ES512", "RS256", "Ed448"):
        yield f"{alg.lower()}-public", json.dumps(mint.generate_key(alg).public_jwk).encode()
    yield "ed25519-public", json.dumps(CLIENT_KEY.public_jwk).encode()
    yield "es256-private", json.dumps(mint.generate_key("ES256").private_jwk()).encode()
    yield "issuer-jwks", json.dumps(mint.jwks_for(ISSUER_KEY, kid=ISSUER_KID)).encode()
    mixed = [mint.jwks_for(mint.generate_key(alg))["keys"][0] for alg in ("ES256", "PS256")]
    mixed.append({**CLIENT_KEY.public_jwk, "use": "enc"})
    mixed.append({"kty": "oct", "k": "c2VjcmV0"})
    yield "mixed-jwks", json.dumps({"keys": mixed}).encode()


def token_seeds() -> Seeds:
    yield "bound-jwt", TOKEN.encode()
    yield "unbound-scope-list", _token(jkt=None, extra={"scp": ["a", "b"], "nbf": NOW}).encode()
    yield "expired", _token(now=NOW - 7200).encode()
    yield "not-yet-valid", _token(now=NOW + 7200).encode()
    yield "audience-list", _token(audience=None, extra={"aud": [AUDIENCE, "other"]}).encode()
    yield "other-issuer", _token(issuer="https://other.example.com").encode()
    dpop_typ = mint.encode_jws(
        {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": CLIENT_KEY.public_jwk},
        {"iss": ISSUER, "exp": NOW + 60},
        "EdDSA",
        CLIENT_KEY.private_key,
    )
    yield "proof-as-token", dpop_typ.encode()
    yield "rfc9449-fig6-opaque", VECTORS["access_token_fig6"].encode()
    yield "rfc9449-fig8-jwt", VECTORS["jwt_access_token_fig8"]["jwt"].encode()


def htu_seeds() -> Seeds:
    for name, uri in (
        ("plain", RESOURCE_URL),
        ("default-port-dots-query", "HTTPS://API.Example.COM:443/a/./b/../c/%7e%41?x=1#frag"),
        ("ipv6-port", "http://[::1]:8080/health/%2fx"),
        ("rfc9449-token", "https://server.example.com/token"),
        ("report-route", "https://api.example.com:8443/report/x"),
        ("legacy-route", "http://any.example/legacy/v1/../x"),
    ):
        yield name, uri.encode()
    yield (
        "envoy-forwarded",
        (
            b"http\ninternal:8080\n/orders/42?x=1\nx-forwarded-proto: https\n"
            b"x-forwarded-host: api.example.com\n"
            b'forwarded: for=192.0.2.1;proto=https;host="api.example.com:8443", for=192.0.2.2'
        ),
    )
    yield "envoy-plain", b"https\napi.example.com\n/orders/42\n"


def authorization_seeds() -> Seeds:
    for name, value in (
        ("dpop", f"DPoP {TOKEN}"),
        (
            "rfc9449-fig13",
            VECTORS["proofs"]["rfc9449_fig13_sec7.1_resource_request"]["authorization_header"],
        ),
        ("bearer", "Bearer mF_9.B5f-4.1JqM"),
        ("lower-case-spaces", "dpop   abc.def.ghi="),
        ("basic", "Basic dXNlcjpwYXNzd29yZA=="),
        ("digest", 'Digest username="a,b", realm="x", nonce="y"'),
        ("comma-joined", "DPoP abc, Bearer def"),
        ("two-lines", "DPoP abc\nDPoP def"),
        ("custom-params", 'Custom a="x\\"y", b=c'),
    ):
        yield name, value.encode()


def nonce_seeds() -> Seeds:
    yield "current", issue_nonce(NONCE_KEYS, NOW).encode()
    yield "old-but-valid", issue_nonce(NONCE_KEYS, NOW - 200).encode()
    yield "expired", issue_nonce(NONCE_KEYS, NOW - 400).encode()
    other = NonceKeys(current=b"another replica set's secret, 32 bytes+")
    yield "other-secret", issue_nonce(other, NOW).encode()
    yield "rfc9449-fig20", VECTORS["nonce_values"]["fig20_fig21_fig24"].encode()


def check_request(headers: dict[str, str], *, raw: bool = False) -> bytes:
    """A ``CheckRequest`` as Envoy sends it (``raw``: with ``encode_raw_headers: true``)."""
    http = attributes_pb.AttributeContext.HttpRequest(
        id="1",
        method=headers.get(":method", ""),
        scheme=headers.get(":scheme", ""),
        host=headers.get(":authority", ""),
        path=headers.get(":path", ""),
        protocol="HTTP/1.1",
    )
    if raw:
        for key, value in headers.items():
            http.header_map.headers.add(key=key, raw_value=value.encode())
    else:
        http.headers.update(headers)
    peer = attributes_pb.AttributeContext.Peer(
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="192.0.2.7", port_value=40312)
        )
    )
    request = extauthz_pb.CheckRequest(
        attributes=attributes_pb.AttributeContext(
            source=peer,
            request=attributes_pb.AttributeContext.Request(http=http),
            metadata_context=base_pb2.Metadata(),
        )
    )
    return bytes(request.SerializeToString())


def extauthz_seeds() -> Seeds:
    def headers(path: str, **extra: str) -> dict[str, str]:
        return {
            ":authority": "api.example.com",
            ":method": "GET",
            ":path": path,
            ":scheme": "https",
            "accept": "application/json",
            "x-request-id": "5b1a0c8e-fuzz",
            **{name.replace("_", "-"): value for name, value in extra.items()},
        }

    url = "https://api.example.com/items/7"
    proof = _proof(CLIENT_KEY, url=url)
    yield "allow", check_request(headers("/items/7", authorization=f"DPoP {TOKEN}", dpop=proof))
    raw = headers("/items/7", authorization=f"DPoP {TOKEN}", dpop=proof)
    yield "allow-raw-headers", check_request(raw, raw=True)
    nonce = issue_nonce(NONCE_KEYS, NOW)
    nonce_proof = _proof(CLIENT_KEY, nonce=nonce, jti="fuzz-proof-2")
    yield (
        "nonce-route",
        check_request(
            headers("/orders/42?page=1", authorization=f"DPoP {TOKEN}", dpop=nonce_proof)
        ),
    )
    yield (
        "legacy-bearer",
        check_request(headers("/legacy/x", authorization=f"Bearer {_token(jkt=None)}")),
    )
    forwarded = headers(
        "/items/7",
        authorization=f"DPoP {TOKEN}",
        dpop=f"{proof},{proof}",
        x_forwarded_proto="https",
        x_forwarded_host="api.example.com",
        forwarded='for=192.0.2.1;proto=https;host="api.example.com"',
    )
    forwarded[":authority"] = "internal:8080"
    forwarded[":scheme"] = "http"
    yield "forwarded-joined-proofs", check_request(forwarded)
    yield "missing-credentials", check_request(headers("/items/7"))


CONFIG_TOML = f"""\
listen = "0.0.0.0:50051"
health_listen = "0.0.0.0:50052"
metrics_listen = "127.0.0.1:9464"
replay_url = "rediss+sentinel://s1:26379,s2:26379/mymaster/0"
redis_username = "dpop"
redis_password_file = "redis.password"
redis_ca_file = "redis-ca.pem"
redis_wait_replicas = 1
nonce_required = true
nonce_secret_file = "nonce.secret"
nonce_previous_secret_file = "nonce-previous.secret"
proof_algs = ["ES256", "EdDSA"]
tls_cert_file = "tls.crt"
tls_key_file = "tls.key"
tls_client_ca_file = "client-ca.pem"
trusted_forwarded_headers = "x-forwarded-proto, forwarded"
decision_log = "deny"
decision_log_sample = 0.25

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"
algs = ["Ed25519", "ES256"]

[[issuers]]
issuer = "https://login.example.com/oauth/v2/oauth-anonymous"
audience = "orders"
discovery = true
opaque_tokens = true
introspection_client_id = "orders-gateway"
introspection_secret_env = "{ISSUER_ENV_VARIABLE}"
introspection_cache_seconds = 120

[[issuers]]
issuer = "https://example.okta.com/oauth2/default"
metadata_url = "https://example.okta.com/oauth2/default/.well-known/oauth-authorization-server"
introspection_client_id = "0oa1b2c3d4resourceserver"
introspection_auth = "private_key_jwt"
introspection_key_file = "introspection-key.json"

[public_base_urls]
"orders.shop.svc.cluster.local:8080" = "https://api.example.com"

[[routes]]
host = "*"
path_prefix = "/legacy"
mode = "allow-bearer"

[[routes]]
host = "api.example.com:8443"
path_prefix = "/healthz"
mode = "off"
nonce_required = false
"""


def config_seeds() -> Seeds:
    yield "toml-full", ("toml\n" + CONFIG_TOML).encode()
    istio = (ROOT / "examples" / "istio" / "verifier-config.toml").read_text()
    yield "toml-istio-example", ("toml\n" + istio).encode()
    document = {
        "replay_url": "redis+cluster://n1:6379,n2,n3",
        "max_message_bytes": 262144,
        "issuers": [{"issuer": ISSUER, "jwks_uri": "https://as.example.com/jwks"}],
        "routes": [{"path_prefix": "/report", "mode": "report-only", "name": "reports"}],
    }
    yield "json", ("json\n" + json.dumps(document, indent=1)).encode()
    defaults = "".join(f"{o.env}={o.default}\n" for o in OPTIONS if o.default and not o.secret)
    yield "env-defaults", ("env\n" + defaults).encode()
    yield (
        "env-secrets",
        (
            b"env\nDPOP_REPLAY_URL=redis://:pw@redis:6379/0\nDPOP_REDIS_PASSWORD_FILE=@/redis.password\n"
            b"DPOP_NONCE_SECRET=0123456789abcdef0123456789abcdef!\nDPOP_NONCE_REQUIRED=yes\n"
            b"DPOP_TLS_CERT_FILE=@/tls.crt\nDPOP_TLS_KEY_FILE=@/tls.key\nDPOP_WORKERS=2\n"
            b"DPOP_LISTEN=[::]:50051\n"
        ),
    )


def forwardauth_seeds() -> Seeds:
    url = "https://api.example.com/items/7"
    proof = _proof(CLIENT_KEY, url=url)

    def request(*lines: str) -> bytes:
        return ("\r\n".join(("GET /verify HTTP/1.1", *lines)) + "\r\n\r\n").encode()

    credentials = (f"Authorization: DPoP {TOKEN}", f"DPoP: {proof}")
    yield "traefik", request(
        "Host: verifier:8081", "X-Forwarded-Method: GET", "X-Forwarded-Proto: https",
        "X-Forwarded-Host: api.example.com", "X-Forwarded-Uri: /items/7",
        "X-Forwarded-For: 198.51.100.7", *credentials,
    )  # fmt: skip
    yield "nginx", request(
        "Host: api.example.com", "X-Original-Method: GET", "X-Original-URI: /items/7?page=2",
        "X-Forwarded-Proto: https", *credentials, "Connection: close",
    )  # fmt: skip
    yield "caddy-nonce-route", request(
        "Host: api.example.com", "X-Forwarded-Method: POST", "X-Forwarded-Uri: /orders/42",
        "X-Forwarded-Proto: https", f"Authorization: DPoP {TOKEN}",
        f"DPoP: {_proof(CLIENT_KEY, method='POST', url='https://api.example.com/orders/42')}",
    )  # fmt: skip
    yield "repeated-dpop", request(
        "Host: api.example.com", "X-Original-Method: GET", "X-Original-URI: /items/7",
        *credentials, f"DPoP: {proof}",
    )  # fmt: skip
    yield "no-target", request("Host: api.example.com", *credentials)
    yield (
        "chunked-body",
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
    )


SEEDS = {
    "proof": proof_seeds,
    "jwk": jwk_seeds,
    "token": token_seeds,
    "htu": htu_seeds,
    "authorization": authorization_seeds,
    "nonce": nonce_seeds,
    "extauthz": extauthz_seeds,
    "forwardauth": forwardauth_seeds,
    "config": config_seeds,
}


def main() -> None:
    for name, seeds in SEEDS.items():
        directory = CORPUS / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for seed_name, data in seeds():
            (directory / seed_name).write_bytes(data)
        print(f"{directory.relative_to(ROOT)}: {len(list(directory.iterdir()))} seeds")


if __name__ == "__main__":
    main()
