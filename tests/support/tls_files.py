"""Redis TLS files for tests, issued by the test PKI (:mod:`tests.support.pki`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.pki import make_pki, make_untrusted_ca
from tests.support.redis_server import RedisTls
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable

__all__ = [
    "TLS_PROBLEMS",
    "assert_fails_closed",
    "client_options",
    "make_redis_tls",
    "make_untrusted_ca",
    "with_problem",
]


def make_redis_tls(directory: Path, *, require_client_cert: bool = True) -> RedisTls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate in ``directory``, as
    the :class:`RedisTls` a TLS-only ``redis-server`` is started with."""
    pki = make_pki(directory)
    return RedisTls(
        ca_file=pki.ca_file,
        cert_file=pki.server_cert_file,
        key_file=pki.server_key_file,
        client_cert_file=pki.client_cert_file,
        client_key_file=pki.client_key_file,
        require_client_cert=require_client_cert,
    )


def client_options(tls: RedisTls) -> dict[str, str]:
    """``RedisReplayStore.from_url`` options of a client that trusts ``tls``'s CA and presents
    its client certificate."""
    return {
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.client_key_file),
    }


TLS_PROBLEMS = ("no client certificate", "untrusted servers", "plaintext", "missing CA file")


def with_problem(
    url: str, tls: RedisTls, problem: str, directory: Path
) -> tuple[str, dict[str, str]]:
    """A ``rediss...`` URL and client options spoiled by one of :data:`TLS_PROBLEMS`."""
    options = client_options(tls)
    if problem == "no client certificate":
        return url, {"ca_file": options["ca_file"]}
    if problem == "untrusted servers":
        return url, {**options, "ca_file": str(make_untrusted_ca(directory))}
    if problem == "plaintext":
        return url.replace("rediss", "redis", 1), {}
    if problem == "missing CA file":
        return url, {**options, "ca_file": str(directory / "absent.pem")}
    raise ValueError(problem)


def assert_fails_closed(
    url: str, tls: RedisTls, problem: str, directory: Path, within_s: float = 3.0
) -> None:
    """A store whose ``url`` and options have ``problem`` refuses a proof
    (:class:`ReplayStoreUnavailable`: fail closed) and answers False to ``ping``, each within
    ``within_s`` seconds."""
    spoiled, options = with_problem(url, tls, problem, directory)
    store = RedisReplayStore.from_url(spoiled, timeout_s=0.5, **options)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use(b"k", 60.0)
        assert time.monotonic() - started < within_s
        started = time.monotonic()
        assert not store.ping()
        assert time.monotonic() - started < within_s
    finally:
        store.close()
