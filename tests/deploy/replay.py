"""Replay the Dockerfile without a Docker engine, and run the result like a container.

``replay_image`` executes the builder stage's ``COPY``/``RUN`` steps verbatim (same commands,
same flags) with container paths moved under a scratch "root" directory, then applies the
runtime stage's ``COPY`` steps and ``ENV``. ``Container`` starts the image's ENTRYPOINT + CMD
from that root the way a container runtime would: as PID 1 of a new PID namespace, as the
image's numeric USER with no capabilities and ``no_new_privs``, with the root filesystem
read-only and a fresh tmpfs on /tmp (util-linux ``unshare`` + ``setpriv``; needs root, which
the developers' machines and CI have).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy import dockerfile as df

# Top-level directories of the base image's own filesystem: paths under them are used as they
# are. Any other absolute path in the Dockerfile (/src, /wheels, /opt/venv, ...) is created by
# the build and is moved under the replay root. /tmp is the container's tmpfs.
SYSTEM_DIRS = frozenset(
    {
        *("bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media"),
        *("mnt", "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var"),
    }
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's default
_ABS_PATH = re.compile(r"(?<![\w.$}-])/[A-Za-z0-9_.*-]+(?:/[A-Za-z0-9_.*-]*)*")
_INSTALLS = re.compile(r"\b(?:pip|pip3|apt-get|apt|apk|dnf|yum|microdnf)\b[^&;|]*\binstall\b")


class ReplayError(AssertionError):
    """The Dockerfile's steps failed, or use something the replay cannot reproduce."""


@dataclass
class Image:
    """The replayed image: its root, runtime environment and start-up configuration."""

    root: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    workdir: str
    uid: int
    gid: int
    log: list[str] = field(default_factory=list)

    def map(self, path: str) -> str:
        return map_path(path, self.root)

    @property
    def argv(self) -> list[str]:
        return [self.map(a) if a.startswith("/") else a for a in self.entrypoint + self.cmd]


def map_path(path: str, root: Path) -> str:
    """A container path as seen by the replay: build-created paths live under ``root``."""
    first = path.lstrip("/").split("/", 1)[0]
    if not path.startswith("/") or first in SYSTEM_DIRS:
        return path
    return str(root) + path


def map_command(text: str, root: Path) -> str:
    """Move every build-created absolute path in a shell command under ``root``."""
    return _ABS_PATH.sub(lambda m: map_path(m.group(0), root), text)


def _python_shim(directory: Path) -> Path:
    """A bin directory whose ``python``/``python3`` run this interpreter (a venv's python
    must be exec'd, not symlinked, to keep its environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    return directory


def _copy_from_context(
    context: Path, allowed: Sequence[str], sources: list[str], dest: str, root: Path, chmod: str
) -> None:
    target_is_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        clean = source.strip("/").removeprefix("./")
        if clean in ("", "."):
            matches = list(allowed)
        else:
            matches = [f for f in allowed if f == clean or f.startswith(clean + "/")]
        if not matches:
            raise ReplayError(f"COPY {source}: not in the build context (see .dockerignore)")
        for rel in matches:
            if rel == clean:  # a single file
                name = Path(rel).name
                target = Path(map_path(dest, root))
                target = target / name if target_is_dir or target.is_dir() else target
            else:
                target = Path(map_path(dest, root)) / rel[len(clean) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / rel, target)
            if chmod:
                target.chmod(int(chmod, 8))


def _declare(keyword: str, args: str, env: dict[str, str], global_args: Mapping[str, str]) -> None:
    """An ``ARG`` or ``ENV`` instruction: set its variables in ``env`` (an ``ARG`` without a
    default takes the global ``ARG`` of the same name)."""
    for key, value in df.parse_key_values(args, env, keyword=keyword).items():
        env[key] = value or (global_args.get(key, "") if keyword == "ARG" else "")


def replay_image(dockerfile_path: Path, context: Path, root: Path, work: Path) -> Image:
    """Replay ``dockerfile_path`` (context ``context``) into ``root``. ``work`` is scratch."""
    parsed = df.load(dockerfile_path)
    ignore = df.DockerIgnore.parse((context / ".dockerignore").read_text(encoding="utf-8"))
    allowed = df.context_files(context, ignore)
    final = parsed.final
    copies_from = {i.flags.get("from") for i in final.all("COPY")} - {None}
    if len(parsed.stages) < 2 or not copies_from:
        raise ReplayError("expected a multi-stage build whose final stage copies from a builder")
    log: list[str] = []

    shim = _python_shim(work / "shim-bin")
    host_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PIP_")) and k not in ("VIRTUAL_ENV", "PATH")
    }

    for stage in parsed.stages[:-1]:
        if stage.name not in copies_from:
            raise ReplayError(f"stage {stage.name!r} is not used by the final stage")
        env: dict[str, str] = {"PATH": DEFAULT_PATH}
        workdir = "/"
        shell = ["/bin/sh", "-c"]
        for ins in stage.instructions:
            if ins.keyword in ("ARG", "ENV"):
                _declare(ins.keyword, ins.args, env, parsed.global_args)
            elif ins.keyword == "WORKDIR":
                workdir = df.substitute(ins.args, env)
                Path(map_path(workdir, root)).mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "SHELL":
                shell = ins.exec_form()
            elif ins.keyword == "COPY":
                if "from" in ins.flags:
                    raise ReplayError(f"line {ins.line}: COPY --from in a builder stage")
                sources, dest = df.copy_sources_and_dest(ins, env)
                if not dest.startswith("/"):
                    dest = workdir.rstrip("/") + "/" + dest
                _copy_from_context(
                    context, allowed, sources, dest, root, ins.flags.get("chmod", "")
                )
            elif ins.keyword == "RUN":
                for name, value in ins.flags.items():
                    mount = df.parse_mount(value) if name == "mount" else {}
                    if mount.get("type") == "cache" and mount.get("target", "").endswith(
                        ".cache/pip"
                    ):
                        continue  # pip's own cache: the replay's pip uses the host's cache
                    raise ReplayError(f"line {ins.line}: RUN --{name}={value} is not replayable")
                argv = df.run_command(ins, shell)
                argv = [*argv[:-1], map_command(argv[-1], root)]
                run_env = {**host_env, **env, "PATH": f"{shim}:{env['PATH']}"}
                log.append(f"$ {argv[-1]}")
                result = subprocess.run(
                    argv,
                    cwd=map_path(workdir, root),
                    env=run_env,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=900,
                )
                log.append(result.stdout[-4000:] + result.stderr[-4000:])
                if result.returncode != 0:
                    raise ReplayError(
                        f"Dockerfile line {ins.line} failed ({result.returncode}):\n"
                        f"{argv[-1]}\n--- stdout\n{result.stdout[-6000:]}\n"
                        f"--- stderr\n{result.stderr[-6000:]}"
                    )
            elif ins.keyword not in ("LABEL",):
                raise ReplayError(f"line {ins.line}: {ins.keyword} in a builder stage")

    env = {"PATH": DEFAULT_PATH}
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck: list[str] = []
    workdir = "/"
    user = "0"
    for ins in final.instructions:
        if ins.keyword in ("ARG", "ENV"):
            _declare(ins.keyword, ins.args, env, parsed.global_args)
        elif ins.keyword == "RUN":
            # Runtime RUN steps change the base system (users, removing pip) and are not
            # replayed; they must not install anything the service needs.
            if _INSTALLS.search(ins.args):
                raise ReplayError(
                    f"line {ins.line}: the runtime stage installs packages; install in the "
                    "builder stage (the replay test only runs the builder's installs)"
                )
        elif ins.keyword == "COPY":
            sources, dest = df.copy_sources_and_dest(ins, env)
            if "from" in ins.flags:
                for source in sources:
                    if source.rstrip("/") != dest.rstrip("/"):
                        raise ReplayError(
                            f"line {ins.line}: COPY --from must keep the path ({source} -> "
                            f"{dest}): a virtualenv's scripts carry absolute paths"
                        )
                    if not Path(map_path(source, root)).exists():
                        raise ReplayError(f"line {ins.line}: the builder produced no {source}")
            else:
                _copy_from_context(
                    context, allowed, sources, dest, root, ins.flags.get("chmod", "")
                )
        elif ins.keyword == "WORKDIR":
            workdir = df.substitute(ins.args, env)
        elif ins.keyword == "USER":
            user = df.substitute(ins.args, env)
        elif ins.keyword == "ENTRYPOINT":
            entrypoint = ins.exec_form()
        elif ins.keyword == "CMD":
            cmd = ins.exec_form()
        elif ins.keyword == "HEALTHCHECK":
            words = ins.args.split()
            start = next(i for i, w in enumerate(words) if w.upper() == "CMD")
            hc = df.Instruction("CMD", {}, " ".join(words[start + 1 :]), ins.line)
            healthcheck = hc.exec_form()

    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise ReplayError(f"USER {user!r} must be numeric (uid:gid) for runAsNonRoot")
    runtime_env = {k: map_command(v, root) if k == "PATH" else v for k, v in env.items()}
    runtime_env = {
        k: map_path(v, root) if v.startswith("/") and k != "PATH" else v
        for k, v in runtime_env.items()
    }
    return Image(
        root=root,
        env=runtime_env,
        entrypoint=entrypoint,
        cmd=cmd,
        healthcheck=healthcheck,
        workdir=workdir,
        uid=int(uid_text),
        gid=int(gid_text or uid_text),
        log=log,
    )


@contextlib.contextmanager
def replay_root() -> Iterator[Path]:
    """A world-readable scratch root outside /tmp (the sandbox mounts a tmpfs over /tmp)."""
    root = Path(tempfile.mkdtemp(prefix="dpop-replay-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- running it -----------------------------------------------------------------------------

_SANDBOX = r"""
set -eu
root="$1"; workdir="$2"; uid="$3"; gid="$4"; shift 4
mount --make-rprivate /
# Host-only detail: make the base interpreter reachable for the unprivileged user when it lives
# under a private directory (e.g. pyenv in /root). Arguments: hidden-ancestor keep stage ... --
while [ "$1" != "--" ]; do
    hidden="$1"; keep="$2"; stage="$3"; shift 3
    mount --bind "$keep" "$stage"
    mount -t tmpfs -o mode=0755,size=1m tmpfs "$hidden"
    mkdir -p "$keep"
    mount --bind "$stage" "$keep"
    mount -o remount,bind,ro "$keep"
done
shift
mount -o remount,bind,ro /
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs /tmp
if touch "$root/.rw-probe" 2>/dev/null; then
    echo "sandbox: the root filesystem is still writable" >&2
    exit 97
fi
cd "$workdir"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
"""


def _hidden_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot traverse, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def interpreter_exposures(root: Path) -> list[str]:
    """Sandbox arguments that expose the replay's base Python to the image's user.

    The real image has its interpreter in /usr/local (world-readable). Here the replayed
    virtualenv points at the interpreter that runs the tests, which may live under a private
    directory such as /root/.pyenv; inside the sandbox's mount namespace only that prefix is
    made visible (read-only), nothing else of the private directory.
    """
    prefixes = {Path(sys.base_prefix).resolve()}
    base_executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    prefixes.add(base_executable.parent)
    args: list[str] = []
    seen: set[Path] = set()
    for index, prefix in enumerate(sorted(prefixes)):
        hidden = _hidden_ancestor(prefix)
        if hidden is None or any(prefix.is_relative_to(p) for p in seen):
            continue
        stage = root / f".sandbox-stage-{index}"
        stage.mkdir(exist_ok=True)
        args += [str(hidden), str(prefix), str(stage)]
        seen.add(prefix)
    return args


def sandbox_tools() -> dict[str, str]:
    """Absolute paths of unshare/setpriv/nsenter; a clear failure when they are missing or
    namespaces cannot be created here."""
    tools = {}
    for name in ("unshare", "setpriv", "nsenter", "mount"):
        found = shutil.which(name, path=DEFAULT_PATH)
        if not found:
            raise ReplayError(f"{name} (util-linux) is required to run the replayed image")
        tools[name] = found
    if os.geteuid() != 0:
        raise ReplayError("running the replayed image needs root (mount and PID namespaces)")
    probe = subprocess.run(
        [tools["unshare"], "--mount", "--pid", "--fork", "--mount-proc", "/bin/true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise ReplayError(f"cannot create mount/PID namespaces here: {probe.stderr.strip()}")
    return tools


class Container:
    """The replayed image running as PID 1 in its own PID and mount namespaces."""

    def __init__(self, image: Image, env: Mapping[str, str]) -> None:
        self.image = image
        self.env = dict(env)
        self.tools = sandbox_tools()
        argv = [
            self.tools["unshare"],
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "/bin/sh",
            "-c",
            _SANDBOX,
            "sandbox",
            str(image.root),
            image.workdir,
            str(image.uid),
            str(image.gid),
            *interpreter_exposures(image.root),
            "--",
            *image.argv,
        ]
        self.process = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._pump, args=(self.process.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, False), daemon=True).start()

    def _pump(self, stream: object, is_stdout: bool) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            if is_stdout:
                self.stdout.put(line)
            else:
                self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None and self.stdout.empty():
                raise ReplayError(
                    f"the service exited with {self.process.returncode} before printing "
                    f"{needle!r}:\n{self.stderr}"
                )
            try:
                line = self.stdout.get(timeout=0.2)
            except queue.Empty:
                continue
            if needle in line:
                return line
        raise ReplayError(f"no {needle!r} within {timeout}s:\n{self.stderr}")

    @property
    def pid1(self) -> int:
        """Host PID of the container's PID 1 (the service): unshare's only child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for _ in range(50):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
            time.sleep(0.1)
        raise ReplayError("unshare has no child process")

    def namespace_pid(self, host_pid: int) -> int:
        """The PID of ``host_pid`` inside its own (innermost) PID namespace."""
        for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
        raise ReplayError("no NSpid in /proc status")

    def exec(self, argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (its namespaces, user, environment): like
        ``docker exec``, which is how Docker runs a HEALTHCHECK."""
        return subprocess.run(
            [
                self.tools["nsenter"],
                f"--target={self.pid1}",
                "--mount",
                "--pid",
                f"--wd={self.image.workdir}",
                self.tools["setpriv"],
                f"--reuid={self.image.uid}",
                f"--regid={self.image.gid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
                *argv,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM to PID 1, as ``docker stop`` / the kubelet send it; returns (exit code,
        seconds until the container's PID 1 was gone)."""
        start = time.monotonic()
        os.kill(self.pid1, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ReplayError(
                f"PID 1 ignored SIGTERM for {timeout}s (no handler?):\n{self.stderr}"
            ) from None
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # unshare --kill-child takes PID 1 (and the namespace) along
            self.process.wait(timeout=10)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def is_executable(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & stat.S_IXOTH)
