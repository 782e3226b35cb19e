"""The verifier container of the Deployment the Helm chart renders, as ``podman create`` flags.

What the kubelet would do with the rendered container is done here with podman: its ``args``,
its ``env`` (every ``*_LISTEN`` address moved to a free loopback port, since the container
shares the host's network), its ``securityContext`` (user, read-only root, no capabilities, no
privilege escalation), its volumes (the ``emptyDir`` on /tmp as a tmpfs of the same size, the
ConfigMap as read-only files) and its memory limit. A field this module does not know how to
carry over fails the test, so the chart cannot grow a setting the image is never run with.
The preStop sleep and the probes are the kubelet's part; the tests call the probes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.chart import Rendered
from tests.support.net import free_port

KNOWN_CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "args",
    "env",
    "ports",
    "startupProbe",
    "readinessProbe",
    "livenessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
    "lifecycle",
}
KNOWN_SECURITY_FIELDS = {
    "allowPrivilegeEscalation",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "capabilities",
    "seccompProfile",
}


@dataclass
class PodRun:
    """``podman create`` flags, environment and command for the chart's verifier container."""

    rendered: Rendered
    run_args: list[str]
    env: dict[str, str]
    command: list[str]
    moved: dict[int, str] = field(default_factory=dict)
    """Container port -> the loopback address that now serves it."""
    grace_seconds: int = 30
    """The pod's terminationGracePeriodSeconds."""

    def address(self, port: int) -> str:
        return self.moved[port]


def _memory_flag(quantity: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, flag in units.items():
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + flag
    raise AssertionError(f"memory limit {quantity!r}: unit not handled here")


def pod_run(rendered: Rendered, config_dir: Path) -> PodRun:
    """The flags for ``rendered``'s verifier container; ConfigMap volumes are written into
    ``config_dir`` (one sub-directory each) and bind-mounted read-only."""
    container = rendered.verifier
    pod = rendered.deployment["spec"]["template"]["spec"]
    unknown = set(container) - KNOWN_CONTAINER_FIELDS
    assert not unknown, f"the chart's container sets {unknown}: carry them over in tests/image"
    assert "command" not in container, "the chart must use the image's ENTRYPOINT"
    args: list[str] = []

    env: dict[str, str] = {}
    moved: dict[int, str] = {}
    for item in container.get("env", []):
        assert "value" in item, f"env {item['name']} comes from {item}: not handled here"
        value = str(item["value"])
        if item["name"].endswith("_LISTEN"):
            port = int(value.rpartition(":")[2])
            value = moved[port] = f"127.0.0.1:{free_port()}"
        env[item["name"]] = value

    security: dict[str, Any] = container["securityContext"]
    unknown = set(security) - KNOWN_SECURITY_FIELDS
    assert not unknown, f"the chart's securityContext sets {unknown}: carry them over"
    uid, gid = security["runAsUser"], security["runAsGroup"]
    if security.get("runAsNonRoot"):
        assert uid != 0, "runAsNonRoot with uid 0 would not start"
    args += ["--user", f"{uid}:{gid}"]
    if security.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    assert security.get("privileged") is not True
    for cap in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap.lower()]
    assert not security.get("capabilities", {}).get("add"), "no capability may be added"
    seccomp = security.get("seccompProfile", {}).get("type", "RuntimeDefault")
    assert seccomp == "RuntimeDefault", seccomp  # podman's default profile

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = _memory_flag(volume["emptyDir"].get("sizeLimit", "64Mi"))
            args += ["--tmpfs", f"{path}:rw,nosuid,nodev,size={size},mode=1777"]
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            data = rendered.one("ConfigMap", name)["data"]
            directory = config_dir / mount["name"]
            directory.mkdir(mode=0o755, parents=True)
            directory.chmod(0o755)
            for key, text in data.items():
                (directory / key).write_text(text, encoding="utf-8")
                (directory / key).chmod(0o644)
            assert mount.get("readOnly"), f"{path}: the ConfigMap must be mounted read-only"
            args += ["--volume", f"{directory}:{path}:ro"]
        else:
            raise AssertionError(f"volume {volume}: not handled here")

    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        args += ["--memory", _memory_flag(limit)]
    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    return PodRun(rendered, args, env, list(container.get("args", [])), moved, grace)
