"""Redis TLS files for tests, issued by the test PKI (:mod:`tests.support.pki`)."""

from __future__ import annotations

from pathlib import Path

from tests.support.pki import make_pki, make_untrusted_ca
from tests.support.redis_server import RedisTls

__all__ = ["client_options", "make_redis_tls", "make_untrusted_ca"]


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
