"""The ``WWW-Authenticate`` challenge of RFC 9449 §7.1 (and RFC 6750 §3 for its parameters)."""

from __future__ import annotations

from collections.abc import Iterable

from verifier.domain.reasons import RfcError


def quote(value: str) -> str:
    """An RFC 9110 §5.6.4 quoted-string, keeping only printable ASCII."""
    printable = "".join(ch for ch in value if " " <= ch <= "~")
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dpop_challenge(error: RfcError, description: str, algs: Iterable[str]) -> str:
    """One ``DPoP`` challenge: ``error`` and ``error_description`` when there is an error, and
    ``algs`` (the proof algorithms this server accepts) always.

    Without an error (the request carried no credentials, RFC 6750 §3.1) the challenge is
    ``DPoP algs="..."``.
    """
    params = []
    if error is not RfcError.NONE:
        params.append(f"error={quote(error.value)}")
        if description:
            params.append(f"error_description={quote(description)}")
    params.append(f"algs={quote(' '.join(algs))}")
    return "DPoP " + ", ".join(params)
