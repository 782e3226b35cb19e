"""Pure parts of the token sources: Cache-Control, endpoint URLs, metadata, introspection answers,
client authentication, key-set lifetimes on a settable clock, fetches shared by concurrent
threads, and the issuer settings."""

from __future__ import annotations

import json
import re
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.threads import race_in_threads
from tests.unit.helpers import DROP, with_members
from verifier.cli import mint
from verifier.config import ConfigError, load_settings
from verifier.domain.reasons import Denial, Reason
from verifier.tokens.client_auth import (
    ASSERTION_TYPE,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    load_private_key,
)
from verifier.tokens.discovery import (
    IssuerMetadata,
    IssuerMetadataSource,
    IssuerMismatch,
    MetadataInvalid,
    metadata_urls,
    parse_metadata,
)
from verifier.tokens.http import Fetched, cache_max_age, endpoint_url_problem
from verifier.tokens.introspection import check_introspection
from verifier.tokens.presets import PRESETS, presets_markdown
from verifier.tokens.sources import KeySourceUnavailable, RemoteKeySource

NOW = 1_700_000_000.0
ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"
JKT = mint.generate_key("ES256").jkt


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        ("", "", None),
        ("public, max-age=600", "", 600.0),
        ("max-age=600", "100", 500.0),
        ("max-age=60", "100", 0.0),
        ('max-age="30"', "", 30.0),
        ("no-cache", "", 0.0),
        ("max-age=600, no-store", "", 0.0),
        ("max-age=soon", "", 0.0),
        ("must-revalidate", "", None),
    ],
)
def test_cache_max_age(cache_control: str, age: str, expected: float | None) -> None:
    assert cache_max_age(cache_control, age) == expected


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://as.example/jwks", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://localhost/jwks", True),
        ("http://as.example/jwks", False),
        ("ftp://as.example/jwks", False),
        ("/relative/jwks", False),
        ("https:///no-host", False),
    ],
)
def test_endpoint_urls(url: str, ok: bool) -> None:
    assert (endpoint_url_problem(url) == "") is ok


def test_metadata_urls_insert_rfc8414_and_append_oidc() -> None:
    assert metadata_urls("https://as.example") == (
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    )
    assert metadata_urls("https://kc.example/realms/demo/") == (
        "https://kc.example/.well-known/oauth-authorization-server/realms/demo",
        "https://kc.example/realms/demo/.well-known/openid-configuration",
    )


def test_metadata_issuer_must_match_exactly() -> None:
    document = {"issuer": ISSUER + "/", "jwks_uri": ISSUER + "/jwks"}
    with pytest.raises(IssuerMismatch):
        parse_metadata(document, issuer=ISSUER, url="u")
    metadata = parse_metadata({**document, "issuer": ISSUER}, issuer=ISSUER, url="u")
    assert (metadata.jwks_uri, metadata.dpop_algs) == (ISSUER + "/jwks", None)


@pytest.mark.parametrize(
    "document",
    [
        {"jwks_uri": "http://as.example.com/jwks"},
        {"jwks_uri": 7},
        {"introspection_endpoint": "http://as.example.com/introspect"},
        {"dpop_signing_alg_values_supported": "ES256"},
        {"dpop_signing_alg_values_supported": ["ES256", 1]},
    ],
)
def test_unusable_metadata_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(MetadataInvalid):
        parse_metadata({"issuer": ISSUER, **document}, issuer=ISSUER, url="u")


# --- introspection answers -----------------------------------------------------------------


def answer(**members: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "active": True,
        "token_type": "DPoP",
        "cnf": {"jkt": JKT},
        "aud": AUDIENCE,
        "exp": NOW + 60,
        "sub": "alice",
    }
    return with_members(document, members)


INTROSPECTION = [
    ("inactive", answer(active=False), Reason.TOKEN_INACTIVE),
    ("active as a string", answer(active="true"), Reason.TOKEN_INACTIVE),
    ("another issuer", answer(iss="https://other.example"), Reason.TOKEN_ISSUER_UNKNOWN),
    ("token_type not a string", answer(token_type=1), Reason.TOKEN_CLAIMS_INVALID),
    ("DPoP without cnf", answer(cnf=DROP), Reason.TOKEN_CLAIMS_INVALID),
    ("Bearer with cnf", answer(token_type="Bearer"), Reason.TOKEN_CLAIMS_INVALID),
    ("no exp", answer(exp=DROP), Reason.TOKEN_EXPIRED),
    ("expired", answer(exp=NOW - 60), Reason.TOKEN_EXPIRED),
    ("exp beyond int64", answer(exp=2**63), Reason.TOKEN_CLAIMS_INVALID),
    ("exp after 9999", answer(exp=253_402_300_800), Reason.TOKEN_CLAIMS_INVALID),
    ("not yet valid", answer(nbf=NOW + 60), Reason.TOKEN_NOT_YET_VALID),
    ("other audience", answer(aud=["https://else"]), Reason.TOKEN_AUDIENCE_INVALID),
    ("cnf not an object", answer(cnf="x"), Reason.TOKEN_CLAIMS_INVALID),
]


@pytest.mark.parametrize(
    ("why", "document", "reason"), INTROSPECTION, ids=[w for w, *_ in INTROSPECTION]
)
def test_introspection_answer_refused(why: str, document: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(Denial) as caught:
        check_introspection(document, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=0)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    "document",
    [answer(), answer(token_type="dpop", iss=ISSUER), answer(token_type=DROP)],
    ids=["DPoP", "lower-case type with iss", "no token_type"],
)
def test_introspection_answer_accepted(document: dict[str, Any]) -> None:
    claims = check_introspection(document, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=0)
    assert (claims.issuer, claims.subject, claims.jkt) == (ISSUER, "alice", JKT)


def test_unbound_bearer_answer_has_no_binding() -> None:
    document = answer(token_type="Bearer", cnf=DROP)
    claims = check_introspection(document, issuer=ISSUER, audience=None, now=NOW, leeway=0)
    assert claims.jkt == ""


# --- client authentication -----------------------------------------------------------------


def test_client_secrets_never_show_in_repr() -> None:
    for auth in (ClientSecretBasic("c", "hunter2"), ClientSecretPost("c", "hunter2")):
        assert "hunter2" not in repr(auth)
    form: dict[str, str] = {}
    assert ClientSecretBasic("c", "s").credentials(form, NOW) == ("c", "s") and form == {}
    assert ClientSecretPost("c", "s").credentials(form, NOW) is None
    assert form == {"client_id": "c", "client_secret": "s"}


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_private_key_jwt_assertion(tmp_path: Path, alg: str) -> None:
    key = mint.generate_key(alg)
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps({**key.private_jwk(), "kid": "k1"}))
    loaded, loaded_alg, kid = load_private_key(str(path))
    assert (loaded_alg, kid) == (alg, "k1")
    form: dict[str, str] = {}
    PrivateKeyJwt("client", loaded, loaded_alg, ISSUER, kid).credentials(form, time.time())
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "k1"
    claims = jwt.decode(
        form["client_assertion"],
        jwt.PyJWK(key.public_jwk, algorithm=alg).key,
        algorithms=[alg],
        audience=ISSUER,
    )
    assert claims["iss"] == claims["sub"] == "client" and claims["exp"] - claims["iat"] == 60


def test_private_key_from_pem_and_refusals(tmp_path: Path) -> None:
    key = mint.generate_key("ES384")
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert load_private_key(str(pem))[1:] == ("ES384", "")
    public = tmp_path / "public.jwk"
    public.write_text(json.dumps(key.public_jwk))
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key")
    for path in (public, garbage):
        with pytest.raises(ValueError, match=path.name):
            load_private_key(str(path))


# --- key-set lifetime on a settable clock --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Documents:
    """An in-memory JWKS endpoint: answers with ``jwks`` and ``max_age`` after ``delay``
    seconds, or raises ``error``."""

    def __init__(self) -> None:
        self.jwks = mint.jwks_for(mint.generate_key("ES256"), kid="k1")
        self.max_age: float | None = None
        self.error: Exception | None = None
        self.delay = 0.0
        self.calls = 0

    def __call__(self, url: str) -> Fetched:
        self.calls += 1
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return Fetched(self.jwks, self.max_age)


@pytest.mark.parametrize(
    ("max_age", "lifetime"), [(None, 300.0), (10.0, 60.0), (900.0, 900.0), (10**6, 3600.0)]
)
def test_key_set_lifetime_follows_max_age_within_bounds(
    max_age: float | None, lifetime: float
) -> None:
    clock, documents = Clock(), Documents()
    documents.max_age = max_age
    source = RemoteKeySource("https://as/jwks", fetcher=documents, clock=clock)
    source.refresh()
    assert source.status().state == "fresh"
    clock.now += lifetime + 1
    assert source.status().state == "stale"  # past its lifetime, within max_stale


def test_stale_keys_are_served_until_max_stale_then_refused() -> None:
    clock, documents = Clock(), Documents()
    source = RemoteKeySource(
        "https://as/jwks", fetcher=documents, clock=clock, max_stale=100, retry_min=5
    )
    assert [k.kid for k in source.keys("k1")] == ["k1"]
    documents.error = OSError("down")
    clock.now += 300 + 100  # lifetime 300 s + max_stale 100 s: still served
    assert [k.kid for k in source.keys("k1")] == ["k1"]
    assert source.counters.stale_lookups == 1 and documents.calls == 1
    clock.now += 1
    with pytest.raises(KeySourceUnavailable):
        source.keys("k1")
    assert source.status().state == "expired" and source.counters.expired_lookups == 1
    with pytest.raises(KeySourceUnavailable):  # retried at most every retry_min seconds
        source.keys("k1")
    assert documents.calls == 2
    documents.error = None
    clock.now += 5
    assert [k.kid for k in source.keys("k1")] == ["k1"]
    assert source.status().state == "fresh" and documents.calls == 3


def test_failed_refreshes_back_off() -> None:
    clock, documents = Clock(), Documents()
    source = RemoteKeySource("https://as/jwks", fetcher=documents, clock=clock, retry_min=5)
    source.refresh()
    assert source._until_next_refresh() == pytest.approx(240)  # 80% of 300 s
    documents.error = OSError("down")
    delays = []
    for _ in range(8):
        source.refresh()
        delays.append(source._until_next_refresh())
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300]


def test_concurrent_lookups_share_the_first_load() -> None:
    clock, documents = Clock(), Documents()
    documents.delay = 0.1  # all 20 ask while the first fetch is out
    source = RemoteKeySource("https://as/jwks", fetcher=documents, clock=clock)
    results = race_in_threads([partial(source.keys, "k1")] * 20)
    assert [[k.kid for k in r] for r in results if isinstance(r, tuple)] == [["k1"]] * 20
    assert documents.calls == 1


def test_concurrent_metadata_readers_share_one_read() -> None:
    urls: list[str] = []

    def slow(url: str) -> Fetched:
        urls.append(url)
        time.sleep(0.1)
        return Fetched({"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"})

    source = IssuerMetadataSource(ISSUER, slow, clock=Clock())
    results = race_in_threads([source.current] * 20)
    assert [r.jwks_uri for r in results if isinstance(r, IssuerMetadata)] == [ISSUER + "/jwks"] * 20
    assert urls == [metadata_urls(ISSUER)[0]]


# --- settings ------------------------------------------------------------------------------


def settings_from(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Any:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    return load_settings({"config_file": str(config)}, environ=environ or {})


def test_introspecting_issuer_settings(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    settings = settings_from(
        tmp_path,
        """
[[issuers]]
issuer = "https://as.example"
discovery = true
introspection_client_id = "rs"
introspection_secret_file = "secret"
opaque_tokens = true
introspection_cache_seconds = 60
""",
    )
    (issuer,) = settings.issuers
    assert issuer.introspection_secret == "s3cret" and issuer.introspection_cache_seconds == 60
    assert issuer.discovers and issuer.introspects and issuer.opaque_tokens
    assert "s3cret" not in repr(settings)


ISSUER_ERRORS = [
    ("jwks_uri = 'https://as/j'\ndiscovery = true", "issuers[0].jwks_uri"),
    ("opaque_tokens = true\ndiscovery = true", "issuers[0].opaque_tokens"),
    (
        "introspection_client_id = 'rs'\nintrospection_secret_env = 'X'",
        "issuers[0].introspection_secret_env",
    ),
    (
        "introspection_client_id = 'rs'\nintrospection_endpoint = 'https://as/i'",
        "issuers[0].introspection_secret_file",
    ),
    (
        "introspection_client_id = 'rs'\nintrospection_secret_env = 'S'",
        "issuers[0].introspection_endpoint",
    ),
    (
        "discovery = true\nintrospection_client_id = 'rs'\nintrospection_auth = 'private_key_jwt'",
        "issuers[0].introspection_key_file",
    ),
    (
        "discovery = true\nintrospection_client_id = 'rs'\nintrospection_auth = 'tls_client_auth'\n"
        "introspection_secret_env = 'S'",
        "issuers[0].introspection_auth",
    ),
    ("metadata_url = 'http://as.example/meta'", "issuers[0].metadata_url"),
    ("discovery = 'maybe'", "issuers[0].discovery"),
    ("discovery = true\njwks_max_refresh_seconds = 10", "issuers[0].jwks_max_refresh_seconds"),
    ("discovery = true\naudience = []", "issuers[0].audience"),
    ("discovery = true\naudience = ['a', '']", "issuers[0].audience"),
    ("discovery = true\naudience = ''", "issuers[0].audience"),
    ("discovery = true\naudience = 7", "issuers[0].audience"),
    ("discovery = true\naudience = ['a', 7]", "issuers[0].audience"),
    ("discovery = true\njwt_typ = []", "issuers[0].jwt_typ"),
    ("discovery = true\njwt_typ = ['dpop+jwt']", "issuers[0].jwt_typ"),
    ("discovery = true\njwt_typ = ['at jwt']", "issuers[0].jwt_typ"),
    ("discovery = true\njwt_typ = 'at+jwt'\nrequire_iat = 'no way'", "issuers[0].require_iat"),
    ("discovery = true\nclient_id_claims = []", "issuers[0].client_id_claims"),
    ("discovery = true\nclient_id_claims = ['client id']", "issuers[0].client_id_claims"),
    ("discovery = true\npreset = 'ping'", "issuers[0].preset"),
    ("preset = 7", "issuers[0].preset"),
]


@pytest.mark.parametrize(("body", "setting"), ISSUER_ERRORS, ids=[s for _, s in ISSUER_ERRORS])
def test_bad_issuer_settings_name_the_key(tmp_path: Path, body: str, setting: str) -> None:
    toml = f"[[issuers]]\nissuer = 'https://as.example'\n{body}\n"
    with pytest.raises(ConfigError) as caught:
        settings_from(tmp_path, toml, environ={"S": "secret"})
    assert caught.value.setting == setting


def test_only_one_issuer_resolves_opaque_tokens(tmp_path: Path) -> None:
    entry = (
        "[[issuers]]\nissuer = '{}'\ndiscovery = true\nintrospection_client_id = 'rs'\n"
        "introspection_secret_env = 'S'\nopaque_tokens = true\n"
    )
    toml = entry.format("https://a.example") + entry.format("https://b.example")
    with pytest.raises(ConfigError) as caught:
        settings_from(tmp_path, toml, environ={"S": "secret"})
    assert caught.value.setting == "issuers[1].opaque_tokens"


# --- issue 19: several audiences, the token profile, presets ---------------------------------


def test_audience_is_one_or_a_list(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
[[issuers]]
issuer = "https://as.example"
discovery = true
audience = ["urn:orders", "urn:billing", "urn:orders"]

[[issuers]]
issuer = "https://other.example"
discovery = true
audience = "urn:orders"

[[issuers]]
issuer = "https://third.example"
discovery = true
""",
    )
    listed, single, unchecked = settings.issuers
    assert listed.audiences == ("urn:orders", "urn:billing")
    assert single.audiences == ("urn:orders",)
    assert unchecked.audiences is None


def test_token_profile_defaults_follow_rfc9068(tmp_path: Path) -> None:
    (issuer,) = settings_from(
        tmp_path, "[[issuers]]\nissuer = 'https://as.example'\ndiscovery = true\n"
    ).issuers
    assert issuer.jwt_typ == ("at+jwt", "application/at+jwt")
    assert issuer.require_iat is True
    assert issuer.client_id_claims == ("client_id", "azp")
    assert issuer.preset == ""


def test_a_preset_is_a_base_the_entry_overrides(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
[[issuers]]
issuer = "https://sso.example.com/realms/shop"
preset = "keycloak"
audience = "orders-api"

[[issuers]]
issuer = "https://sso.example.com/realms/strict"
preset = "keycloak"
discovery = false
jwks_uri = "https://sso.example.com/realms/strict/protocol/openid-connect/certs"
jwt_typ = ["at+jwt"]
""",
    )
    keycloak, strict = settings.issuers
    assert keycloak.preset == "keycloak" and keycloak.discovery is True
    assert keycloak.jwt_typ == ("JWT", "at+jwt")
    assert keycloak.audiences == ("orders-api",)
    assert strict.jwt_typ == ("at+jwt",) and not strict.discovers  # the file's keys win
    assert strict.jwks_uri.endswith("/certs")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_loads_and_cites_its_vendor(tmp_path: Path, name: str) -> None:
    preset = PRESETS[name]
    toml = f"[[issuers]]\nissuer = 'https://as.example'\npreset = '{name}'\naudience = 'api'\n"
    (issuer,) = settings_from(tmp_path, toml).issuers
    assert issuer.preset == name and issuer.discovers
    for key, value in preset.settings.items():
        parsed = getattr(issuer, key)
        assert parsed == (tuple(value) if isinstance(value, list) else value), key
    assert preset.sources and all(url.startswith("https://") for url in preset.sources)
    for fact in (preset.typ, preset.aud, preset.cnf, preset.iat, preset.client):
        assert fact
    assert preset.introspection and preset.metadata


# --- issue 19: an unknown kid refetches at once; only unknown kids start the cool-down --------


def test_an_unknown_kid_right_after_the_start_up_fetch_refetches_at_once() -> None:
    clock, documents = Clock(), Documents()
    source = RemoteKeySource("https://as/jwks", fetcher=documents, clock=clock)
    source.refresh()  # the start-up fetch
    documents.jwks = mint.jwks_for(mint.generate_key("ES256"), kid="k2")  # rotated at once
    clock.now += 1
    assert [k.kid for k in source.keys("k2")] == ["k2"]
    assert documents.calls == 2 and source.counters.unknown_kid_refetches == 1


def test_the_cool_down_counts_from_the_last_unknown_kid_fetch_only() -> None:
    clock, documents = Clock(), Documents()
    source = RemoteKeySource(
        "https://as/jwks", fetcher=documents, clock=clock, unknown_kid_cooldown=30
    )
    source.refresh()
    assert source.keys("forged-1") == () and documents.calls == 2  # fetched at once
    clock.now += 10
    assert source.keys("forged-2") == () and documents.calls == 2  # inside the cool-down
    assert source.counters.unknown_kid_cooldown_skips == 1
    clock.now += 10
    source.refresh()  # a scheduled refresh: it does not restart the cool-down
    assert documents.calls == 3
    clock.now += 10  # 30 s after the last unknown-kid fetch, 10 s after the scheduled one
    documents.jwks = mint.jwks_for(mint.generate_key("ES256"), kid="k2")
    assert [k.kid for k in source.keys("k2")] == ["k2"] and documents.calls == 4
    assert source.counters.unknown_kid_refetches == 2


def test_an_unknown_kid_that_joins_an_older_fetch_fetches_again() -> None:
    """A scheduled fetch under way may have started before the new key was published: the
    unknown kid waits for it, then fetches once more (within its own cool-down budget)."""
    clock, documents = Clock(), Documents()
    source = RemoteKeySource("https://as/jwks", fetcher=documents, clock=clock)
    source.refresh()
    old_set = documents.jwks
    new_set = mint.jwks_for(mint.generate_key("ES256"), kid="k2")
    release, entered = threading.Event(), threading.Event()

    def slow_then_new(url: str) -> Fetched:
        documents.calls += 1
        if documents.calls == 2:  # the scheduled refresh: answers the old set, slowly
            entered.set()
            release.wait(10)
            return Fetched(old_set, None)
        return Fetched(new_set, None)

    source._fetcher = slow_then_new
    scheduled = threading.Thread(target=source.refresh)
    scheduled.start()
    assert entered.wait(10)
    looked_up: list[tuple[Any, ...]] = []
    lookup = threading.Thread(target=lambda: looked_up.append(source.keys("k2")))
    lookup.start()
    time.sleep(0.05)  # the lookup is waiting on the scheduled fetch
    release.set()
    scheduled.join(10)
    lookup.join(10)
    assert [[k.kid for k in found] for found in looked_up] == [["k2"]]
    assert documents.calls == 3 and source.counters.unknown_kid_refetches == 1


# --- docs/token-sources.md runs ---------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "token-sources.md"


def test_the_document_shows_the_presets_as_the_code_defines_them() -> None:
    assert presets_markdown() in DOC.read_text(encoding="utf-8")


def _toml_blocks(text: str) -> list[str]:
    return [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]


def test_every_config_example_in_the_document_loads(tmp_path: Path) -> None:
    """Each ``toml`` block, pasted as a config file, is accepted (secret and key files that it
    names are made up in a temporary directory; secret variables are set)."""
    blocks = _toml_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    for number, block in enumerate(blocks):
        text = block
        for path in sorted(set(re.findall(r'"(/run/secrets/[^"]+)"', block))):
            local = tmp_path / f"{number}-{Path(path).name}"
            local.write_text("a-secret\n")
            text = text.replace(path, str(local))
        variables = set(re.findall(r'introspection_secret_env = "([A-Z_]+)"', block))
        config = tmp_path / f"example-{number}.toml"
        config.write_text(text)
        settings = load_settings(
            {"config_file": str(config)}, environ={name: "a-secret" for name in variables}
        )
        assert settings.issuers, block


def test_the_helm_chart_offers_every_preset() -> None:
    schema_file = DOC.parents[1] / "helm" / "dpop-verifier" / "values.schema.json"
    issuer = json.loads(schema_file.read_text(encoding="utf-8"))["definitions"]["issuer"]
    assert set(issuer["properties"]["preset"]["enum"]) == set(PRESETS)
    assert all(PRESETS[name].settings.get("discovery") is True for name in PRESETS)  # anyOf
