"""Real multi-process Redis set-ups on loopback: a Sentinel-managed master with replicas, and a
Redis Cluster built with ``redis-cli --cluster create``. Slow-ish to build (a second or two):
share one per test module.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.support.net import free_port
from tests.support.redis_server import RedisServer, RedisTls, SentinelMonitor

MASTER_NAME = "mymaster"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; AssertionError naming ``what`` if not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _info(server: RedisServer, section: str) -> dict[str, str]:
    lines = server.cli("INFO", section).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


@dataclass
class SentinelSetup:
    """One master, its replicas and the sentinels that watch them (quorum 2 of 3)."""

    master: RedisServer
    replicas: list[RedisServer]
    sentinels: list[RedisServer]
    name: str = MASTER_NAME

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,.../mymaster/0`` (``rediss+`` with TLS)."""
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        scheme = "rediss" if self.master.tls is not None else "redis"
        return f"{scheme}+sentinel://{hosts}/{self.name}/0"

    @property
    def tls(self) -> RedisTls:
        """The TLS files every server and sentinel uses (a TLS set-up only)."""
        assert self.master.tls is not None, "not a TLS set-up"
        return self.master.tls

    def current_master_port(self) -> int:
        """The master port the first answering sentinel reports."""
        for sentinel in self.sentinels:
            with contextlib.suppress(subprocess.SubprocessError):
                reply = sentinel.cli("SENTINEL", "get-master-addr-by-name", self.name)
                return int(reply.split()[1])
        raise AssertionError("no sentinel answered")

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in [self.master, *self.replicas] if s.port == port)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Every replica synced and every sentinel sees the master, the replicas and peers."""
        expected_replicas = len(self.replicas)
        expected_peers = len(self.sentinels) - 1

        def synced() -> bool:
            info = _info(self.master, "replication")
            online = [v for k, v in info.items() if k.startswith("slave") and "online" in v]
            return len(online) == expected_replicas

        wait_until(synced, timeout_s, "replicas to sync")

        def sentinels_agree() -> bool:
            for sentinel in self.sentinels:
                fields = sentinel.cli("SENTINEL", "master", self.name).splitlines()
                info = dict(zip(fields[::2], fields[1::2], strict=False))
                if int(info.get("num-slaves", 0)) != expected_replicas:
                    return False
                if int(info.get("num-other-sentinels", 0)) != expected_peers:
                    return False
            return True

        wait_until(sentinels_agree, timeout_s, "sentinels to discover replicas and peers")


# Full syncs start at once instead of after the default 5 s wait for more replicas.
_REPLICATION_OPTIONS = {"repl-diskless-sync-delay": "0"}


@contextlib.contextmanager
def sentinel_setup(
    replicas: int = 2,
    sentinels: int = 3,
    tls: RedisTls | None = None,
    sentinel_password: str | None = None,
) -> Iterator[SentinelSetup]:
    """Start a master, ``replicas`` replicas and ``sentinels`` sentinels; kill all at exit.

    With ``tls`` every one of them speaks TLS only, replication and the sentinels' own
    connections included (each server presents ``tls``'s certificate and, for the links it
    opens, its client certificate). With ``sentinel_password`` the sentinels require it."""
    base = dict(_REPLICATION_OPTIONS)
    if tls is not None:
        base.update(_tls_links(tls))
    with contextlib.ExitStack() as stack:
        master = stack.enter_context(RedisServer(options=base, tls=tls))
        replica_options = {**base, "replicaof": f"127.0.0.1 {master.port}"}
        replica_servers = [
            stack.enter_context(RedisServer(options=replica_options, tls=tls))
            for _ in range(replicas)
        ]
        monitor = SentinelMonitor(master_port=master.port, name=MASTER_NAME)
        sentinel_options = {k: v for k, v in base.items() if k.startswith("tls-")}
        sentinel_servers = [
            stack.enter_context(
                RedisServer(
                    sentinel=monitor, tls=tls, options=sentinel_options, password=sentinel_password
                )
            )
            for _ in range(sentinels)
        ]
        setup = SentinelSetup(master, replica_servers, sentinel_servers)
        setup.wait_ready()
        yield setup


@contextlib.contextmanager
def master_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and one replica of it, replication up (for ``WAIT`` tests)."""
    options = dict(_REPLICATION_OPTIONS)
    with contextlib.ExitStack() as stack:
        master = stack.enter_context(RedisServer(options=options))
        replica_options = {**options, "replicaof": f"127.0.0.1 {master.port}"}
        replica = stack.enter_context(RedisServer(options=replica_options))
        wait_until(
            lambda: "master_link_status:up" in replica.cli("INFO", "replication"),
            10,
            "the replica to sync",
        )
        # With diskless sync the master counts the replica (for WAIT) only after its first
        # acknowledgement, up to a second after the replica reports the link up.
        wait_until(
            lambda: "state=online" in master.cli("INFO", "replication"),
            10,
            "the master to count the replica",
        )
        yield master, replica


@dataclass
class ClusterSetup:
    """A Redis Cluster of masters (and optional replicas), all on loopback."""

    masters: list[RedisServer]
    replicas: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+cluster://`` (``rediss+`` with TLS) naming every master as a seed."""
        scheme = "rediss" if self.masters[0].tls is not None else "redis"
        return f"{scheme}+cluster://" + ",".join(m.address for m in self.masters)

    @property
    def tls(self) -> RedisTls:
        """The TLS files every node uses (a TLS cluster only)."""
        assert self.masters[0].tls is not None, "not a TLS cluster"
        return self.masters[0].tls

    def master_for_key(self, key: bytes) -> RedisServer:
        """The master serving ``key``'s hash slot now."""
        slot = int(self.masters[0].cli("CLUSTER", "KEYSLOT", key.decode()))
        for line in self.masters[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2]:
                continue
            port = int(fields[1].split(":")[1].split("@")[0])
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return next(m for m in self.masters if m.port == port)
        raise AssertionError(f"slot {slot} is not served")


_CLUSTER_OPTIONS = {
    **_REPLICATION_OPTIONS,
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": "2000",
}


def _cluster_node(tls: RedisTls | None) -> RedisServer:
    # An explicit bus port: the default (port + 10000) fails for ports above 55535.
    options = {**_CLUSTER_OPTIONS, "cluster-port": str(free_port())}
    if tls is not None:  # the cluster bus and replication over TLS too
        options.update(_tls_links(tls), **{"tls-cluster": "yes"})
    return RedisServer(options=options, tls=tls)


def _tls_links(tls: RedisTls) -> dict[str, str]:
    """Options for the TLS links a server opens itself (replication), with its client cert."""
    return {
        "tls-replication": "yes",
        "tls-client-cert-file": str(tls.client_cert_file),
        "tls-client-key-file": str(tls.client_key_file),
    }


def _cli_tls(tls: RedisTls | None) -> list[str]:
    if tls is None:
        return []
    return ["--tls", "--cacert", str(tls.ca_file), "--cert", str(tls.client_cert_file),
            "--key", str(tls.client_key_file)]  # fmt: skip


@contextlib.contextmanager
def cluster_setup(
    masters: int = 3, replica_of_first: bool = False, tls: RedisTls | None = None
) -> Iterator[ClusterSetup]:
    """``redis-cli --cluster create`` over ``masters`` fresh nodes; optionally one replica for
    the first master (added with ``--cluster add-node --cluster-slave``). With ``tls`` every
    node speaks TLS only (clients, cluster bus, replication)."""
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(_cluster_node(tls)) for _ in range(masters)]
        _redis_cli(*_cli_tls(tls), "--cluster", "create", *(n.address for n in nodes),
                   "--cluster-yes")  # fmt: skip
        setup = ClusterSetup(nodes)
        if replica_of_first:
            replica = stack.enter_context(_cluster_node(tls))
            first_id = nodes[0].cli("CLUSTER", "MYID")
            _redis_cli(
                *_cli_tls(tls), "--cluster", "add-node", replica.address, nodes[0].address,
                "--cluster-slave", "--cluster-master-id", first_id,
            )  # fmt: skip
            setup.replicas.append(replica)

        def healthy() -> bool:
            for node in [*setup.masters, *setup.replicas]:
                if _info_cluster(node).get("cluster_state") != "ok":
                    return False
                if int(_info_cluster(node).get("cluster_known_nodes", 0)) != len(nodes) + len(
                    setup.replicas
                ):
                    return False
            if setup.replicas:
                info = _info(nodes[0], "replication")
                return any(k.startswith("slave") and "online" in v for k, v in info.items())
            return True

        wait_until(healthy, 20.0, "the cluster to be ok on every node")
        yield setup


def _info_cluster(node: RedisServer) -> dict[str, str]:
    lines = node.cli("CLUSTER", "INFO").splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _redis_cli(*args: str) -> str:
    completed = subprocess.run(
        ["redis-cli", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"redis-cli {args[:2]} failed:\n{completed.stdout}{completed.stderr}")
    return completed.stdout
