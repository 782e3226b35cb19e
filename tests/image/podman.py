"""Podman on this kind of machine: a private storage, the stand-in base, the build, containers.

No container registry is reachable here, so ``FROM python:<version>-slim-<release>`` cannot be
pulled. ``scripts/standin-base.sh`` makes a stand-in for it from Debian's mirror (Debian's own
Python) and :func:`ensure_base` imports it under the name the ``FROM`` line expects, once: the
imported image carries a key of everything it was made from, so later runs reuse it.

Everything lives under :data:`CACHE_DIR` (``/var/cache/dpop-verifier-test``): podman's storage
(kept between runs, so the base is made once per machine), the build's cache mount for pip, and
a lock that serialises making the base. Podman runs with ``runc`` and ``cgroupfs`` (crun fails
on this machine's cgroups), explicit ulimits (without them the runtime's ``setrlimit`` is
refused), the ``file`` events backend (no systemd) and the host network (the service listens on
free loopback ports; no container network, no traffic beyond loopback).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("DPOP_IMAGE_TEST_CACHE", "/var/cache/dpop-verifier-test"))
STORAGE_DRIVER = os.environ.get("DPOP_IMAGE_TEST_STORAGE_DRIVER", "overlay")
STANDIN_SCRIPT = ROOT / "scripts" / "standin-base.sh"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("podman", "runc", "mmdebstrap")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
KEY_LABEL = "io.dpop-verifier.test.standin-key"
PYTHON_LABEL = "io.dpop-verifier.test.python"
SESSION_LABEL = "io.dpop-verifier.test.session"
TEST_REPOSITORY = "localhost/dpop-verifier-test"
"""Built images are tagged ``TEST_REPOSITORY:<session>`` (``<pid>-<start>``)."""
# What the official python image sets that the stand-in's tar file cannot carry.
BASE_CHANGES = (
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


class PodmanError(AssertionError):
    """A podman command failed; the message carries its output."""


def missing_tools() -> str | None:
    """Why the image tests cannot run here, or None."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed: the image tests build and run the image with "
            "podman (runc) on a base made by mmdebstrap; run `make install-image-tools` "
            "(apt-get install podman runc mmdebstrap)"
        )
    if os.geteuid() != 0:
        return "the image tests run podman as root (rootful storage, overlay mounts)"
    return None


class Podman:
    """``podman`` with this machine's flags and the tests' private storage."""

    def __init__(self, cache_dir: Path = CACHE_DIR, driver: str = STORAGE_DRIVER) -> None:
        self.cache_dir = cache_dir
        self.driver = driver
        self.tmp_dir = cache_dir / "tmp"  # the build's cache mounts (pip) live here
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.global_args = [
            "podman",
            "--root",
            str(cache_dir / f"storage-{driver}"),
            "--runroot",
            f"/run/dpop-verifier-test/{driver}",
            "--storage-driver",
            driver,
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]
        self.env = {**os.environ, "TMPDIR": str(self.tmp_dir)}

    def argv(self, *args: str) -> list[str]:
        return [*self.global_args, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; raises :class:`PodmanError` with the output when ``check``."""
        result = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=self.env,
            input=input,
        )
        if check and result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def inspect_image(self, ref: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run("image", "inspect", ref).stdout)
        return found[0]

    def images(self, *filters: str) -> list[dict[str, Any]]:
        args = ["images", "--format", "json"]
        for f in filters:
            args += ["--filter", f]
        listed: list[dict[str, Any]] = json.loads(self.run(*args).stdout or "[]")
        return listed

    @contextlib.contextmanager
    def mounted(self, ref: str) -> Iterator[Path]:
        """The image's root filesystem, mounted read-only on the host (``podman image
        mount``), for inspection from outside."""
        path = Path(self.run("image", "mount", ref).stdout.strip())
        try:
            yield path
        finally:
            self.run("image", "unmount", ref, check=False)

    def remove_leftovers(self) -> None:
        """Containers and images of test sessions whose process is gone (a killed run)."""
        listed = self.run("ps", "-a", "--format", "json", "--filter", f"label={SESSION_LABEL}")
        for container in json.loads(listed.stdout or "[]"):
            if not _alive(container.get("Labels", {}).get(SESSION_LABEL, "")):
                self.run("rm", "--force", "--time", "0", container["Id"], check=False)
        for image in self.images(f"reference={TEST_REPOSITORY}"):
            names = image.get("Names") or []
            sessions = [n.rpartition(":")[2] for n in names if n.startswith(TEST_REPOSITORY)]
            if sessions and not any(_alive(s) for s in sessions):
                self.run("rmi", "--force", image["Id"], check=False)
        self.run("image", "prune", "--force", check=False)


def _alive(session: str) -> bool:
    """Whether the test session ``<pid>-<start>`` still runs."""
    pid_text = session.partition("-")[0]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the stand-in base ----------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """The stand-in for ``python:<version>-slim-<release>``, tagged under that name."""

    name: str
    release: str
    python_version: str
    """Debian's Python in it, X.Y.Z."""
    origin: str
    """How this run got it: "cached" (already in storage) or "made" (mmdebstrap + import)."""
    seconds: float
    image: dict[str, Any]

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])


def base_key(release: str) -> str:
    """A digest of everything the stand-in is made from: the script, the release, the host's
    CA bundle (pip in the build needs it) and the import changes."""
    digest = hashlib.sha256()
    for part in (
        STANDIN_SCRIPT.read_bytes(),
        release.encode(),
        HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b"",
        "\n".join(BASE_CHANGES).encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base(podman: Podman, release: str) -> Base:
    """The stand-in base for ``release``: reused when storage has one made from the same
    inputs, otherwise made with ``scripts/standin-base.sh`` (about 20-70 s) and imported."""
    key = base_key(release)
    start = time.monotonic()
    with _locked(podman.cache_dir / "base.lock"):
        found = podman.images(f"label={KEY_LABEL}={key}")
        origin = "cached"
        if found:
            image_id = found[0]["Id"]
            python_version = found[0]["Labels"][PYTHON_LABEL]
        else:
            origin = "made"
            image_id, python_version = _make_base(podman, release, key)
        minor = ".".join(python_version.split(".")[:2])
        name = f"docker.io/library/python:{minor}-slim-{release}"
        podman.run("tag", image_id, name)
    return Base(
        name=name,
        release=release,
        python_version=python_version,
        origin=origin,
        seconds=time.monotonic() - start,
        image=podman.inspect_image(image_id),
    )


def _make_base(podman: Podman, release: str, key: str) -> tuple[str, str]:
    with tempfile.TemporaryDirectory(dir=podman.tmp_dir, prefix="standin-") as work:
        tar = Path(work) / "rootfs.tar"
        made = subprocess.run(
            ["/bin/sh", str(STANDIN_SCRIPT), release, str(tar)],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if made.returncode != 0:
            raise PodmanError(
                f"scripts/standin-base.sh {release} failed ({made.returncode}):\n"
                f"{made.stdout[-3000:]}\n{made.stderr[-6000:]}"
            )
        python_version = made.stdout.split()[-1]
        changes = [
            *BASE_CHANGES,
            f"LABEL {KEY_LABEL}={key}",
            f"LABEL {PYTHON_LABEL}={python_version}",
        ]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        imported = podman.run(*args, str(tar), timeout=600)
        image_id = imported.stdout.strip().splitlines()[-1].removeprefix("sha256:")
    return image_id, python_version


# --- the build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    """The image built from the Dockerfile on the stand-in base."""

    id: str
    tag: str
    seconds: float
    inspect: dict[str, Any]
    base: Base
    log: str

    @property
    def size(self) -> int:
        return int(self.inspect["Size"])

    @property
    def layers(self) -> int:
        return len(self.inspect["RootFS"]["Layers"])

    @property
    def added_size(self) -> int:
        """Bytes the Dockerfile adds on top of its base."""
        return self.size - int(self.base.image["Size"])

    @property
    def added_layers(self) -> int:
        return self.layers - len(self.base.image["RootFS"]["Layers"])

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect["Config"]
        return config

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env", []))


def build_flags(base: Base, tag: str) -> list[str]:
    """``podman build`` flags for this machine, before the command's own arguments."""
    return [
        "--pull=never",  # no registry: FROM resolves to the local stand-in
        "--format=docker",  # the OCI format has no HEALTHCHECK
        "--layers",  # one layer per step, as `docker build` makes them ...
        "--no-cache",  # ... all built afresh on every run
        "--network=host",  # pip reaches the package index as this machine does
        "--runtime=runc",
        *ULIMITS,
        f"--build-arg=PYTHON_VERSION={base.python_minor}",
        f"--build-arg=DEBIAN_RELEASE={base.release}",
        f"--tag={tag}",
    ]


def build(podman: Podman, base: Base, command: str, tag: str, iidfile: Path) -> BuiltImage:
    """Run ``command``, a ``docker build ...`` line from the docs, in the repository with
    ``docker`` standing for podman with :func:`build_flags` (any other docker subcommand
    fails)."""
    prefix = " ".join(shlex.quote(a) for a in podman.global_args)
    flags = " ".join(shlex.quote(a) for a in build_flags(base, tag))
    script = (
        "set -eu\n"
        "docker() {\n"
        '  if [ "$1" != build ]; then echo "docker $1: only build is run here" >&2; return 2; fi\n'
        "  shift\n"
        f'  {prefix} build {flags} --iidfile {shlex.quote(str(iidfile))} "$@"\n'
        "}\n"
        f"{command}\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
        env=podman.env,
    )
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise PodmanError(f"the build failed ({result.returncode}):\n{log[-8000:]}")
    image_id = iidfile.read_text().strip().removeprefix("sha256:")
    return BuiltImage(image_id, tag, seconds, podman.inspect_image(image_id), base, log)


# --- containers -----------------------------------------------------------------------------


class Container:
    """One container of the image, created with ``podman create``; started by :meth:`start`."""

    def __init__(
        self,
        podman: Podman,
        image: str,
        name: str,
        session: str,
        run_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = (),
    ) -> None:
        self.podman = podman
        self.name = name
        args = ["create", "--name", name, f"--label={SESSION_LABEL}={session}"]
        args += ["--network=host", *ULIMITS, "--health-interval=disable"]  # no systemd timers
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        args += [*run_args, image, *command]
        podman.run(*args)

    def start(self) -> None:
        self.podman.run("start", self.name)

    def inspect(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(
            self.podman.run("container", "inspect", self.name).stdout
        )
        return found[0]

    @property
    def host_pid(self) -> int:
        """The host PID of the container's PID 1."""
        return int(self.inspect()["State"]["Pid"])

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``podman exec``: ``argv`` in the container, as its user, with its environment."""
        return self.podman.run("exec", self.name, *argv, check=False, timeout=timeout)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """``podman healthcheck run``: the image's HEALTHCHECK command, run in the container."""
        return self.podman.run("healthcheck", "run", self.name, check=False, timeout=60)

    def logs(self) -> str:
        result = self.podman.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def signal(self, name: str) -> None:
        self.podman.run("kill", "--signal", name, self.name)

    def wait(self, timeout: float) -> int:
        """Wait for the container to exit; its exit code."""
        result = self.podman.run("wait", self.name, timeout=timeout)
        return int(result.stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        self.podman.run("rm", "--force", "--time", "0", self.name, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
