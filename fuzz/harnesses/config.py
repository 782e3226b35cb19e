"""The config loader (``verifier.config.load_settings``): from a file and from an environment.

Input: a first line naming the source, ``toml``, ``json`` or ``env``; then the file's content,
or for ``env`` one ``NAME=value`` per line, read as ``os.environ`` reads an environment (bytes
that are not UTF-8 become lone surrogates; a NUL cannot occur). Documented outcome:
:class:`~verifier.config.ConfigError`.

The files a configuration names live in a sandbox directory: relative paths in a file resolve
against it (the file is written there), and in the environment ``@/`` stands for it. Inputs
that name a path under ``dev``, ``proc`` or ``sys`` are skipped: no operator points a secret
file at them, and reading ``/dev/zero`` would never end.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

from fuzz.fixtures import ISSUER_KEY, ISSUER_KID
from fuzz.harness import SCRATCH_ENV, Harness
from verifier.cli import mint
from verifier.config import ConfigError, load_settings

ISSUER_ENV_VARIABLE = "FUZZ_INTROSPECTION_CLIENT_SECRET"
"""The variable a seed's issuer names in ``introspection_secret_env``."""
SANDBOX_FILES = {
    "jwks.json": json.dumps(mint.jwks_for(ISSUER_KEY, kid=ISSUER_KID)).encode(),
    "nonce.secret": b"dpop-verifier fuzz nonce secret of 48 bytes......\n",
    "nonce-previous.secret": b"dpop-verifier fuzz previous nonce secret, 48 bytes\n",
    "redis.password": b"redis-password\n",
    "introspection.secret": b"introspection-client-secret\n",
    # Only their existence is checked when settings are loaded.
    "tls.crt": b"",
    "tls.key": b"",
    "client-ca.pem": b"",
    "redis-ca.pem": b"",
    "redis.crt": b"",
    "redis.key": b"",
    "introspection-key.json": b"",
}
_SYSTEM_PATH = re.compile(r"(?:^|[/\\])(?:dev|proc|sys)(?:[/\\]|$)", re.IGNORECASE)


@functools.cache
def sandbox() -> Path:
    """A temporary directory holding :data:`SANDBOX_FILES`, removed at exit; inside
    ``$DPOP_FUZZ_SCRATCH`` when set (``fuzz.run`` sets it: libFuzzer ends its process without
    running ``atexit``)."""
    root = Path(tempfile.mkdtemp(prefix="dpop-fuzz-config-", dir=os.environ.get(SCRATCH_ENV)))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name, content in SANDBOX_FILES.items():
        (root / name).write_bytes(content)
    return root


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _names_system_file(body: bytes, suffix: str) -> bool:
    """Whether a file the loader could parse names a path under dev, proc or sys."""
    try:
        document = tomllib.loads(body.decode()) if suffix == ".toml" else json.loads(body)
    except Exception:  # the loader refuses it too, before reading any path
        return False
    return any(_SYSTEM_PATH.search(string) for string in _strings(document))


def load_file(data: bytes) -> None:
    """A config file, named by ``DPOP_CONFIG_FILE``."""
    source, _, body = data.partition(b"\n")
    suffix = {b"toml": ".toml", b"json": ".json"}.get(source.strip())
    if suffix is None or _names_system_file(body, suffix):
        return
    path = sandbox() / f"config{suffix}"
    path.write_bytes(body)
    try:
        environ = {"DPOP_CONFIG_FILE": str(path), ISSUER_ENV_VARIABLE: "client-secret"}
        load_settings(environ=environ)
    finally:
        path.unlink()


def environment(body: bytes) -> dict[str, str]:
    """``NAME=value`` lines as an environment holds them."""
    environ: dict[str, str] = {}
    for line in body.split(b"\n"):
        name, sep, value = line.partition(b"=")
        if sep and name and b"\0" not in line:
            text = value.decode("utf-8", errors="surrogateescape")
            if text.startswith("@/"):
                text = f"{sandbox()}{text[1:]}"
            environ[name.decode("utf-8", errors="surrogateescape")] = text
    return environ


def load_environment(data: bytes) -> None:
    """``DPOP_*`` variables (and the variable an issuer reads its secret from)."""
    source, _, body = data.partition(b"\n")
    if source.strip() != b"env":
        return
    environ = environment(body)
    if any(_SYSTEM_PATH.search(value) for value in environ.values()):
        return
    load_settings(environ=environ)


HARNESS = Harness("config", (load_file, load_environment), (ConfigError,))
