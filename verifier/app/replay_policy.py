"""The start-up log lines that say which replay store is used and what happens when it fails."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from verifier.replay import describe_replay_url

if TYPE_CHECKING:
    from verifier.config import Settings

log = logging.getLogger("verifier.replay")


def log_replay_policy(settings: Settings) -> None:
    """Log the store (never its password), its guarantees, and fail-open loudly."""
    log.info("replay store: %s", describe_replay_url(settings.replay_url))
    if settings.redis_wait_replicas:
        log.info(
            "replay store: each recorded proof waits for %d replica(s), up to %d ms",
            settings.redis_wait_replicas,
            settings.redis_wait_timeout_ms,
        )
    if settings.replay_fail_open:
        log.warning(
            "DPOP_REPLAY_FAIL_OPEN=true: while the replay store is unavailable, proofs are "
            "ACCEPTED WITHOUT REPLAY PROTECTION (RFC 9449 §11.1) and health stays SERVING. "
            "Every such acceptance is logged (rate-limited). Unset it to fail closed."
        )
