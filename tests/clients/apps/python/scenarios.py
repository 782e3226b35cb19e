"""Runs in a fresh virtualenv that holds only dpop-verifier-client and what it depends on
(tests/clients/test_python_package.py). Reads one JSON object on stdin: verifier addresses
(plaintext, TLS, mTLS, one where nothing listens), the test CA and client certificate files,
and VerifyRequest fields minted by the test; prints one JSON object of outcomes by scenario."""

import json
import sys

from dpop_verifier_client import TLS, VerifierClient, VerifierError, VerifyRequest, is_allowed


def outcome(client: VerifierClient, fields: dict) -> dict:
    try:
        answer = client.verify(VerifyRequest(**fields))
    except VerifierError as exc:
        return {"error": type(exc).__name__, "code": exc.code.name, "attempts": exc.attempts}
    return {
        "allowed": is_allowed(answer),
        "reason": answer.reason_code,
        "status": answer.http_status,
    }


def main() -> None:
    given = json.load(sys.stdin)
    ca, cert, key = given["ca"], given["client_cert"], given["client_key"]
    requests = given["requests"]
    scenarios = {
        "plaintext": ({"insecure": True}, "plain", "first"),
        "plaintext_replay": ({"insecure": True}, "plain", "first"),
        "tls": ({"tls": TLS.from_files(ca, server_name="localhost")}, "tls", "tls"),
        "tls_wrong_server_name": (
            {"tls": TLS.from_files(ca, server_name="wrong.test")},
            "tls",
            "spare",
        ),
        "tls_untrusted": ({"tls": TLS()}, "tls", "spare"),
        "plaintext_to_tls": ({"insecure": True}, "tls", "spare"),
        "mtls": ({"tls": TLS.from_files(ca, cert, key)}, "mtls", "mtls"),
        "mtls_without_certificate": ({"tls": TLS.from_files(ca)}, "mtls", "spare"),
        "unreachable": ({"insecure": True}, "dead", "spare"),
    }
    results = {}
    for name, (transport, address, request) in scenarios.items():
        with VerifierClient(given[address], **transport) as client:
            results[name] = outcome(client, requests[request])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
