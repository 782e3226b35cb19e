"""The committed stubs (the server's and the Python client package's own copy) are exactly what
scripts/gen-protos produces, and the wire enums match the Python catalogue one-to-one."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.domain.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "verifier" / "_generated"
CLIENT_STUBS = "clients/python/src/dpop_verifier_client/_generated"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "_generated"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-protos"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh, committed = _tree(out), _tree(COMMITTED)
    assert sorted(fresh) == sorted(committed), "run scripts/gen-protos: files differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run scripts/gen-protos (with the pinned grpcio-tools): {stale} drifted"


def test_committed_client_package_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "gen-protos")
    subprocess.run(
        [sys.executable, script, "--lang", "python-client", "--root", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh, committed = _tree(tmp_path / CLIENT_STUBS), _tree(ROOT / CLIENT_STUBS)
    assert fresh, "nothing generated"
    assert sorted(fresh) == sorted(committed), "run scripts/gen-protos: client files differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run scripts/gen-protos --lang python-client: {stale} drifted"


def test_client_and_server_stubs_share_one_descriptor() -> None:
    """Both packages register dpop/verifier/v1/verifier.proto; one process can import both and
    their messages are the same classes."""
    from dpop_verifier_client._generated.dpop.verifier.v1 import verifier_pb2 as client_pb

    assert client_pb.DESCRIPTOR is pb.DESCRIPTOR
    assert client_pb.VerifyRequest is pb.VerifyRequest


def test_generation_is_deterministic(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "gen-protos")
    for name in ("a", "b"):
        subprocess.run(
            [sys.executable, script, "--out", str(tmp_path / name)], check=True, capture_output=True
        )
    comparison = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only


def test_proto_reason_enum_matches_the_catalogue_one_to_one() -> None:
    wire = {name for name, _ in pb.Reason.items() if name != "REASON_UNSPECIFIED"}
    python = {f"REASON_{reason.name}" for reason in Reason}
    assert wire - python == set(), "proto reasons missing from verifier.domain.reasons.Reason"
    assert python - wire == set(), "Reason members missing from verifier.proto"
    assert pb.Reason.Value("REASON_UNSPECIFIED") == 0


# Wire numbers already released, in order from 1. Append here when adding a reason; never edit.
RELEASED_REASON_NUMBERS = (
    "OK",
    "AUTHORIZATION_MISSING",
    "AUTHORIZATION_MULTIPLE",
    "AUTHORIZATION_MALFORMED",
    "AUTHORIZATION_SCHEME_UNSUPPORTED",
    "BEARER_NOT_ALLOWED",
    "TOKEN_BOUND_SENT_AS_BEARER",
    "PROOF_MISSING",
    "PROOF_MULTIPLE",
    "PROOF_TOO_LARGE",
    "PROOF_MALFORMED",
    "PROOF_TYP_INVALID",
    "PROOF_ALG_NOT_ALLOWED",
    "PROOF_CRIT_UNSUPPORTED",
    "PROOF_JWK_MISSING",
    "PROOF_JWK_PRIVATE",
    "PROOF_JWK_INVALID",
    "PROOF_SIGNATURE_INVALID",
    "PROOF_CLAIMS_INVALID",
    "PROOF_JTI_INVALID",
    "PROOF_HTM_MISMATCH",
    "PROOF_HTU_MISMATCH",
    "PROOF_IAT_INVALID",
    "PROOF_IAT_TOO_OLD",
    "PROOF_IAT_IN_FUTURE",
    "PROOF_ATH_MISSING",
    "PROOF_ATH_MISMATCH",
    "NONCE_REQUIRED",
    "NONCE_INVALID",
    "NONCE_EXPIRED",
    "REPLAYED",
    "TOKEN_TOO_LARGE",
    "TOKEN_MALFORMED",
    "TOKEN_ALG_NOT_ALLOWED",
    "TOKEN_ISSUER_UNKNOWN",
    "TOKEN_KEY_UNKNOWN",
    "TOKEN_SIGNATURE_INVALID",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_AUDIENCE_INVALID",
    "TOKEN_CLAIMS_INVALID",
    "TOKEN_NOT_BOUND",
    "JKT_MISMATCH",
    "KEY_SOURCE_UNAVAILABLE",
    "REPLAY_STORE_UNAVAILABLE",
    "INTERNAL_ERROR",
)


def test_released_reason_numbers_never_change() -> None:
    for number, name in enumerate(RELEASED_REASON_NUMBERS, start=1):
        assert pb.Reason.Value(f"REASON_{name}") == number, name


def test_reason_code_is_the_lowercase_wire_name() -> None:
    # VerifyResponse.reason_code carries Reason.value; clients may derive one from the other.
    for reason in Reason:
        assert reason.value == reason.name.lower()


def test_decision_enum_follows_buf_style() -> None:
    assert dict(pb.Decision.items()) == {
        "DECISION_UNSPECIFIED": 0,
        "DECISION_ALLOW": 1,
        "DECISION_DENY": 2,
    }
