#!/usr/bin/env python3
"""Restore opentelemetry-proto when another package has overwritten its modules.

Other packages (notably xds-protos) ship their own, older copies of the
``opentelemetry/proto/...`` modules; whichever is installed last wins, and the OTLP exporter
then fails with ``cannot import name 'InstrumentationScope'``. This script compares the
installed files with the hashes in opentelemetry-proto's own RECORD and, when any differ,
reinstalls that same version (``--force-reinstall --no-deps``). Standard library only, so it
runs even when the damage breaks imports. ``make install-dev`` runs it.

    .venv/bin/python scripts/repair_otel_proto.py [--check]

Exit 0 when the package is intact (after repair unless ``--check``), 1 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import subprocess
import sys

DISTRIBUTION = "opentelemetry-proto"


def damaged_files() -> list[str]:
    """opentelemetry-proto's files whose content differs from its RECORD, or that are gone."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    damaged = []
    for file in dist.files or ():
        if file.hash is None or file.hash.mode != "sha256":
            continue
        try:
            content = file.locate().read_bytes()  # type: ignore[attr-defined]
        except OSError:
            damaged.append(str(file))
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        if digest.decode() != file.hash.value:
            damaged.append(str(file))
    return damaged


def other_owners() -> list[str]:
    """Installed distributions besides opentelemetry-proto with files under opentelemetry/proto/."""
    owners = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-") == DISTRIBUTION:
            continue
        if any(str(f).startswith("opentelemetry/proto/") for f in dist.files or ()):
            owners.add(name)
    return sorted(owners)


def main(argv: list[str]) -> int:
    damaged = damaged_files()
    if not damaged:
        print(f"{DISTRIBUTION}: intact")
        return 0
    owners = ", ".join(other_owners()) or "another package"
    print(f"{DISTRIBUTION}: {len(damaged)} file(s) overwritten by {owners}")
    if "--check" in argv:
        return 1
    version = importlib.metadata.version(DISTRIBUTION)
    print(f"{DISTRIBUTION}: reinstalling {version}")
    subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
        [sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
         f"{DISTRIBUTION}=={version}"],
        check=True,
    )  # fmt: skip
    still = damaged_files()
    if still:
        print(f"{DISTRIBUTION}: still damaged: {', '.join(still[:5])}", file=sys.stderr)
        return 1
    print(f"{DISTRIBUTION}: repaired")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
