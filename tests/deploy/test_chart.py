"""The Helm chart: rendered by Helm's own engine, linted strictly, validated against the
Kubernetes API schemas, and checked for the properties a platform team relies on."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import chart
from tests.deploy.chart import FULLNAME, NAMESPACE, Rendered
from verifier.server.runtime import LIVENESS_HEALTH_SERVICE

JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": "test-1",
                "alg": "ES256",
                "use": "sig",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }
        ]
    }
)
ISSUERS = [
    {
        "issuer": "https://issuer.example.com",
        "audience": "https://api.example.com",
        "jwks_file": "issuer-jwks.json",
        "algs": ["ES256"],
    },
    {"issuer": "https://login.example.org", "jwks_uri": "https://login.example.org/jwks"},
]
NONCE = "n" * 40

# Value sets every structural test runs against. Each one stands for a way the chart is used.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tls": {
        "tls": {
            "enabled": True,
            "existingSecret": "verifier-tls",
            "clientCA": {"enabled": True, "existingSecret": "mesh-ca"},
        },
        "replay": {
            "url": "rediss://redis.data.svc:6380/0",
            "username": "verifier",
            "tls": {"existingSecret": "redis-ca"},
        },
    },
    "sentinel": {
        "replay": {
            "url": "rediss+sentinel://sentinel-0.data:26379,sentinel-1.data:26379/mymaster/0",
            "password": {"existingSecret": "redis-auth"},
            "sentinel": {"username": "watcher", "password": {"value": "sentinel-pw"}},
            "tls": {
                "existingSecret": "redis-client",
                "caKey": "",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
            },
        },
        "config": {
            "logFormat": "text",
            "settings": {
                "redis_wait_replicas": 1,
                "redis_wait_timeout_ms": 20,
                "redis_retries": 2,
                "redis_key_prefix": "shop:dpop:",
                "decision_log": "deny",
                "decision_log_sample": 0.5,
            },
        },
    },
    "existing-secrets": {
        "replay": {
            "url": "redis://redis-master.data.svc.cluster.local:6379/0",
            "password": {"existingSecret": "redis-auth", "key": "password"},
        },
        "nonce": {
            "required": True,
            "secret": {"existingSecret": "dpop-nonce", "key": "current", "previousKey": "previous"},
        },
    },
    "inline-secrets": {
        "replay": {"url": "redis://redis:6379/0", "password": {"value": "s3cret"}},
        "nonce": {"required": True, "secret": {"value": NONCE, "previousValue": "p" * 40}},
    },
    "hpa-off": {
        "autoscaling": {"enabled": False},
        "replicaCount": 3,
        "podDisruptionBudget": {"minAvailable": "50%"},
        "replay": {"url": "redis://redis:6379/0"},
    },
    "istio": {
        "istio": {
            "extensionProvider": {"renderConfigMap": True, "timeout": "500ms"},
            "authorizationPolicy": {
                "enabled": True,
                "namespace": "shop",
                "selector": {"app": "orders"},
                "rules": [
                    {"to": [{"operation": {"paths": ["/api/*"], "notMethods": ["OPTIONS"]}}]}
                ],
            },
        },
        "podAnnotations": {"sidecar.istio.io/inject": "true"},
        "tests": {"podAnnotations": {"sidecar.istio.io/inject": "false"}},
        "replay": {"url": "redis://redis:6379/0"},
    },
    "istio-gateway": {
        "istio": {
            "authorizationPolicy": {
                "enabled": True,
                "namespace": "istio-ingress",
                "targetRefs": [
                    {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "public"}
                ],
            }
        },
        "replay": {"url": "redis://redis:6379/0"},
    },
    "dev-redis": {
        "devRedis": {"enabled": True},
        "replay": {"password": {"value": "dev-only"}},
        "networkPolicy": {"egress": {"enabled": True}},
    },
    "observability": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prom"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "DPoP"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prom"}},
        },
        "tracing": {"enabled": True, "otlpEndpoint": "http://otel-collector.observability:4317"},
        "replay": {"url": "redis://redis:6379/0"},
    },
    "forward-auth": {
        "forwardAuth": {"enabled": True, "trustedProxies": ["10.42.0.0/16", "fd00:42::/64"]},
        "config": {"settings": {"http_threads": 8}},
    },
    "minimal": {
        "metrics": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "serviceAccount": {"create": False},
        "tests": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "preStopSleepSeconds": 0,
        "topologySpreadConstraints": [],
        "replicaCount": 1,
        "autoscaling": {"enabled": False},
    },
    "kitchen-sink": {
        "fullnameOverride": FULLNAME,
        "commonLabels": {"team": "identity"},
        "image": {
            "repository": "registry.example.com:5000/security/dpop-verifier",
            "tag": "0.1.0",
            "digest": "sha256:" + "a" * 64,
        },
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": 1000680000},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "tmpVolume": {"medium": "Memory", "sizeLimit": "32Mi"},
        "probes": {"liveness": {"grpcService": None}},
        "service": {"clusterIP": "None", "trafficDistribution": "PreferClose"},
        "config": {
            "logLevel": "DEBUG",
            "shutdownGraceSeconds": 20,
            "issuers": ISSUERS,
            "routes": [
                {"name": "admin", "host": "api.example.com", "path_prefix": "/admin"},
                {"name": "legacy", "host": "*", "path_prefix": "/v1", "mode": "allow-bearer"},
            ],
            "publicBaseUrls": {"api.internal:8080": "https://api.example.com"},
            "settings": {
                "replay_timeout_ms": 75,
                "proof_algs": ["ES256", "EdDSA"],
                "upstream_header_subject": "x-user",
                "upstream_header_scope": "",
                "trusted_forwarded_headers": ["x-forwarded-proto"],
            },
            "files": {"issuer-jwks.json": JWKS},
        },
        "terminationGracePeriodSeconds": 40,
        "extraEnv": [{"name": "GRPC_VERBOSITY", "value": "ERROR"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
        "autoscaling": {
            "targetMemoryUtilizationPercentage": 80,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
        "replay": {"url": "redis://redis:6379/0"},
        "networkPolicy": {
            "egress": {
                "enabled": True,
                "rules": [
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                        "ports": [{"port": 443, "protocol": "TCP"}],
                    }
                ],
            }
        },
    },
    "existing-configmap": {"config": {"existingConfigMap": "dpop-config"}},
}

KUBE_VERSIONS = ("1.30.0", "latest")  # the chart's kubeVersion floor and the newest schemas


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, Rendered]:
    name: str = request.param
    return name, chart.render(VARIANTS[name])


def pod_specs(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    specs = [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in rendered.all("Deployment")
    ]
    specs += [(p["metadata"]["name"], p["spec"]) for p in rendered.all("Pod")]
    return specs


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


# --- helm lint / template / API validation ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_helm_lint_strict_passes(name: str) -> None:
    report = chart.lint(VARIANTS[name])
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert report["errors"] == [] and problems == [], json.dumps(report, indent=2)
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_api(
    variant: tuple[str, Rendered], kube_version: str
) -> None:
    import kubernetes_validate.utils

    version = (
        kubernetes_validate.utils.latest_version() if kube_version == "latest" else kube_version
    )
    _, rendered = variant
    assert rendered.manifests
    for manifest in rendered.manifests:
        try:
            chart.validate_object(manifest.doc, version)
        except Exception as exc:  # report which object failed, and why
            message = getattr(exc, "message", str(exc))
            pytest.fail(f"{manifest.template}: {manifest.kind}/{manifest.name}: {message}")


def test_every_object_is_namespaced_and_labelled(variant: tuple[str, Rendered]) -> None:
    _, rendered = variant
    for manifest in rendered.manifests:
        meta = manifest.doc["metadata"]
        assert meta.get("namespace"), f"{manifest.kind}/{manifest.name} has no namespace"
        labels = meta.get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
            assert key in labels, f"{manifest.kind}/{manifest.name} lacks label {key}"
        assert len(manifest.name) <= 63


def test_defaults_render_the_expected_objects() -> None:
    rendered = chart.render()
    kinds = sorted(m.kind for m in rendered.manifests)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Pod",  # the helm test hook
            "Service",
            "ServiceAccount",
        ]
    )


# --- security -----------------------------------------------------------------------------------


def test_pods_and_containers_are_hardened(variant: tuple[str, Rendered]) -> None:
    _, rendered = variant
    for name, spec in pod_specs(rendered):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for field in ("runAsUser", "runAsGroup", "fsGroup"):
            if field in pod:
                assert isinstance(pod[field], int) and pod[field] > 0, (name, field)
        for container in spec["containers"]:
            ctx = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["privileged"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            if "runAsUser" in ctx:
                assert isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] > 0, where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            if container["name"] in ("verifier", "grpc-health"):
                assert "/tmp" in mounts, f"{where}: /tmp must be a writable emptyDir"
                assert "emptyDir" in volumes[mounts["/tmp"]], where
            assert container["resources"].get("requests"), f"{where} has no resource requests"
            assert container["resources"].get("limits", {}).get("memory"), where


def test_default_ids_are_numeric_and_match_the_image() -> None:
    spec = chart.render().deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["runAsGroup"] == 10001
    assert spec["containers"][0]["securityContext"]["runAsUser"] == 10001


def test_large_ids_render_as_integers() -> None:
    # Helm holds numbers as float64; 1000680000 must not come out as 1.00068e+09.
    spec = chart.render(VARIANTS["kitchen-sink"]).deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["fsGroup"] == 1000680000
    assert "runAsUser" not in spec["securityContext"]  # null: left to the platform (OpenShift)
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_verifier_never_gets_a_kubernetes_api_token() -> None:
    rendered = chart.render()
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False
    spec = rendered.deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


# --- probes, ports, drain -----------------------------------------------------------------------


def test_probes_use_grpc_health_on_a_plaintext_port(variant: tuple[str, Rendered]) -> None:
    name, rendered = variant
    container = rendered.verifier
    env = rendered.env
    container_ports = {p["containerPort"]: p["name"] for p in container["ports"]}
    main_port = port_of(env["DPOP_LISTEN"])
    # The health-only listener is always open: its own threads, outside the call limit.
    health_port = port_of(env["DPOP_HEALTH_LISTEN"])
    assert health_port != main_port
    assert container_ports[health_port] == "grpc-health"
    # Readiness asks the main port, unless it serves TLS (kubelet gRPC probes are plaintext).
    ready_port = health_port if "DPOP_TLS_CERT_FILE" in env else main_port

    readiness = container["readinessProbe"]
    assert readiness["grpc"] == {"port": ready_port, "service": "dpop.verifier.v1.VerifierService"}
    for probe_name in ("startupProbe", "livenessProbe"):
        probe = container[probe_name]
        if name == "kitchen-sink":  # probes.liveness.grpcService: null
            assert probe["tcpSocket"] == {"port": health_port}, probe_name
        else:
            # Default: the process-only health service (not the overall one, which follows the
            # replay store: a Redis outage must not restart every pod), on the health-only
            # listener (an overloaded main port sheds calls: that must not restart the pod).
            assert probe["grpc"] == {"port": health_port, "service": LIVENESS_HEALTH_SERVICE}
    assert ready_port in container_ports


def test_service_exposes_a_named_grpc_port_with_app_protocol(variant: tuple[str, Rendered]) -> None:
    _, rendered = variant
    service = rendered.one("Service", FULLNAME)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    grpc = ports["grpc"]
    assert grpc["appProtocol"] == "grpc" and grpc["protocol"] == "TCP"
    container_ports = {p["name"]: p["containerPort"] for p in rendered.verifier["ports"]}
    assert grpc["targetPort"] == "grpc" and "grpc" in container_ports
    assert container_ports["grpc"] == port_of(rendered.env["DPOP_LISTEN"])
    if "DPOP_METRICS_LISTEN" in rendered.env:
        assert ports["metrics"]["targetPort"] == "metrics"
        assert container_ports["metrics"] == port_of(rendered.env["DPOP_METRICS_LISTEN"])
    else:
        assert "metrics" not in ports
    # The Service selects exactly the verifier pods (not the dev Redis, not the test pod).
    selector = service["spec"]["selector"]
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for other in rendered.all("Deployment") + rendered.all("Pod"):
        if other is rendered.deployment:
            continue
        labels = other.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        labels = labels or other["metadata"]["labels"]
        assert not selector.items() <= labels.items(), other["metadata"]["name"]


def test_default_service_and_probe_ports() -> None:
    rendered = chart.render()
    service_ports = {p["name"]: p["port"] for p in rendered.one("Service")["spec"]["ports"]}
    assert service_ports == {"grpc": 50051, "metrics": 9464}
    assert rendered.env["DPOP_LISTEN"] == "0.0.0.0:50051"
    assert rendered.env["DPOP_HEALTH_LISTEN"] == "0.0.0.0:50052"  # probes only: not in the Service
    assert rendered.verifier["livenessProbe"]["grpc"]["port"] == 50052
    assert rendered.verifier["readinessProbe"]["grpc"]["port"] == 50051

    tls = chart.render(VARIANTS["tls"])
    service_ports = {p["name"]: p["port"] for p in tls.one("Service")["spec"]["ports"]}
    assert service_ports == {"grpc": 50051, "grpc-health": 50052, "metrics": 9464}
    assert tls.env["DPOP_HEALTH_LISTEN"] == "0.0.0.0:50052"
    assert tls.verifier["readinessProbe"]["grpc"]["port"] == 50052


def test_termination_grace_exceeds_prestop_plus_drain(variant: tuple[str, Rendered]) -> None:
    _, rendered = variant
    spec = rendered.deployment["spec"]["template"]["spec"]
    drain = float(rendered.env["DPOP_SHUTDOWN_GRACE_SECONDS"])
    pre_stop = rendered.verifier.get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    assert spec["terminationGracePeriodSeconds"] > sleep + drain


def test_topology_spread_defaults_select_the_release_pods() -> None:
    rendered = chart.render()
    spec = rendered.deployment["spec"]["template"]["spec"]
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in spec["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert (
        "topologySpreadConstraints"
        not in (chart.render(VARIANTS["minimal"]).deployment["spec"]["template"]["spec"])
    )


# --- config, secrets, checksums -----------------------------------------------------------------


def test_configmap_checksum_annotation_tracks_the_config() -> None:
    base = chart.render()
    annotations = base.deployment["spec"]["template"]["metadata"]["annotations"]
    configmap_text = base.template_text("templates/configmap.yaml")
    assert annotations["checksum/config"] == hashlib.sha256(configmap_text.encode()).hexdigest()
    changed = chart.render({"config": {"settings": {"iat_max_age_seconds": 30}}})
    changed_sum = changed.deployment["spec"]["template"]["metadata"]["annotations"]
    assert changed_sum["checksum/config"] != annotations["checksum/config"]
    # Secrets the chart renders are tracked the same way.
    inline = chart.render(VARIANTS["inline-secrets"])
    inline_annotations = inline.deployment["spec"]["template"]["metadata"]["annotations"]
    secret_text = inline.template_text("templates/secret.yaml")
    assert inline_annotations["checksum/secret"] == hashlib.sha256(secret_text.encode()).hexdigest()


def test_config_json_carries_issuers_routes_and_settings() -> None:
    rendered = chart.render(VARIANTS["kitchen-sink"])
    configmap = rendered.one("ConfigMap", FULLNAME)
    config = json.loads(configmap["data"]["config.json"])
    values = VARIANTS["kitchen-sink"]["config"]
    assert config["issuers"] == values["issuers"]
    assert config["routes"] == values["routes"]
    assert config["public_base_urls"] == values["publicBaseUrls"]
    assert config["replay_timeout_ms"] == 75
    assert json.loads(configmap["data"]["issuer-jwks.json"]) == json.loads(JWKS)
    assert rendered.env["DPOP_CONFIG_FILE"] == "/etc/dpop-verifier/config.json"


def test_existing_configmap_replaces_the_rendered_one() -> None:
    rendered = chart.render(VARIANTS["existing-configmap"])
    assert rendered.maybe("ConfigMap") is None
    volumes = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "dpop-config"
    assert "annotations" not in rendered.deployment["spec"]["template"]["metadata"]


def _secret_sources(rendered: Rendered) -> dict[str, tuple[str, str]]:
    """file name -> (secret name, key) of the projected secrets volume."""
    volumes = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}
    if "secrets" not in volumes:
        return {}
    out = {}
    for source in volumes["secrets"]["projected"]["sources"]:
        (item,) = source["secret"]["items"]
        out[item["path"]] = (source["secret"]["name"], item["key"])
    return out


def test_existing_secrets_are_referenced_not_rendered() -> None:
    rendered = chart.render(VARIANTS["existing-secrets"])
    assert rendered.maybe("Secret") is None
    assert _secret_sources(rendered) == {
        "redis-password": ("redis-auth", "password"),
        "nonce-secret": ("dpop-nonce", "current"),
        "nonce-previous-secret": ("dpop-nonce", "previous"),
    }
    mount = next(m for m in rendered.verifier["volumeMounts"] if m["name"] == "secrets")
    assert mount["readOnly"] is True
    env = rendered.env
    assert env["DPOP_REDIS_PASSWORD_FILE"] == f"{mount['mountPath']}/redis-password"
    assert env["DPOP_NONCE_SECRET_FILE"] == f"{mount['mountPath']}/nonce-secret"
    assert env["DPOP_NONCE_PREVIOUS_SECRET_FILE"] == f"{mount['mountPath']}/nonce-previous-secret"
    assert env["DPOP_NONCE_REQUIRED"] == "true"
    # No secret value ever lands in an environment variable or the ConfigMap.
    assert not any(k in env for k in ("DPOP_REDIS_PASSWORD", "DPOP_NONCE_SECRET"))
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations and "checksum/secret" not in annotations


def test_inline_secrets_go_into_a_chart_secret() -> None:
    rendered = chart.render(VARIANTS["inline-secrets"])
    secret = rendered.one("Secret", FULLNAME)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "redis-password": "s3cret",
        "nonce-secret": NONCE,
        "nonce-previous-secret": "p" * 40,
    }
    assert set(_secret_sources(rendered)) == set(data)
    assert all(name == FULLNAME for name, _ in _secret_sources(rendered).values())
    configmap = json.dumps(rendered.one("ConfigMap"))
    assert "s3cret" not in configmap and NONCE not in configmap


def test_tls_secrets_are_mounted_read_only() -> None:
    rendered = chart.render(VARIANTS["tls"])
    volumes = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "verifier-tls"
    assert volumes["client-ca"]["secret"]["secretName"] == "mesh-ca"
    mounts = {m["name"]: m for m in rendered.verifier["volumeMounts"]}
    env = rendered.env
    assert env["DPOP_TLS_CERT_FILE"] == mounts["tls"]["mountPath"] + "/tls.crt"
    assert env["DPOP_TLS_KEY_FILE"] == mounts["tls"]["mountPath"] + "/tls.key"
    assert env["DPOP_TLS_CLIENT_CA_FILE"] == mounts["client-ca"]["mountPath"] + "/ca.crt"
    assert all(mounts[n]["readOnly"] for n in ("tls", "client-ca", "config"))


# --- scaling and disruption ---------------------------------------------------------------------


def test_hpa_owns_replicas_when_enabled() -> None:
    rendered = chart.render()
    assert "replicas" not in rendered.deployment["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert hpa["spec"]["minReplicas"] >= 2

    off = chart.render(VARIANTS["hpa-off"])
    assert off.maybe("HorizontalPodAutoscaler") is None
    assert off.deployment["spec"]["replicas"] == 3
    assert off.one("PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


def test_pdb_selects_the_verifier_pods() -> None:
    rendered = chart.render()
    pdb = rendered.one("PodDisruptionBudget")
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    strategy = rendered.deployment["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


# --- network policy -----------------------------------------------------------------------------


def test_network_policy_admits_only_mesh_gateways_and_labelled_clients() -> None:
    rendered = chart.render()
    policy = rendered.one("NetworkPolicy", FULLNAME)
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    peers = grpc_rule["from"]
    client_label = {f"{FULLNAME}-client": "true"}
    assert peers[0] == {"podSelector": {"matchLabels": client_label}}
    assert peers[1:] == chart.default_values()["networkPolicy"]["allowedClients"]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # The helm test pod is one of the labelled clients, so it gets through.
    test_pod = rendered.one("Pod")
    assert client_label.items() <= test_pod["metadata"]["labels"].items()


def test_forward_auth_is_off_by_default_and_wired_when_enabled() -> None:
    assert "DPOP_HTTP_LISTEN" not in chart.render().env
    rendered = chart.render(VARIANTS["forward-auth"])
    assert rendered.env["DPOP_HTTP_LISTEN"] == "0.0.0.0:8081"
    assert rendered.env["DPOP_HTTP_TRUSTED_PROXIES"] == "10.42.0.0/16,fd00:42::/64"
    ports = {p["name"]: p["containerPort"] for p in rendered.verifier["ports"]}
    assert ports["forward-auth"] == 8081
    service = {p["name"]: p for p in rendered.one("Service")["spec"]["ports"]}
    assert service["forward-auth"]["port"] == 8081
    assert service["forward-auth"]["targetPort"] == "forward-auth"
    assert service["forward-auth"]["appProtocol"] == "http"
    policy = rendered.one("NetworkPolicy", FULLNAME)
    (rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "forward-auth"]
    client_label = {f"{FULLNAME}-client": "true"}
    assert rule["from"][0] == {"podSelector": {"matchLabels": client_label}}
    assert rule["from"][1:] == chart.default_values()["networkPolicy"]["forwardAuthAllowedClients"]


def test_network_policy_egress_when_enabled() -> None:
    rendered = chart.render(VARIANTS["dev-redis"])
    policy = rendered.one("NetworkPolicy", FULLNAME)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, redis = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert redis["ports"] == [{"port": 6379, "protocol": "TCP"}]
    redis_pod_labels = rendered.one("Deployment", f"{FULLNAME}-redis")["spec"]["template"][
        "metadata"
    ]["labels"]
    assert redis["to"][0]["podSelector"]["matchLabels"].items() <= redis_pod_labels.items()


# --- Istio --------------------------------------------------------------------------------------


def test_istio_authorization_policy_is_custom_with_the_provider() -> None:
    rendered = chart.render(VARIANTS["istio"])
    policy = rendered.one("AuthorizationPolicy")
    assert policy["metadata"]["namespace"] == "shop"
    spec = policy["spec"]
    assert spec["action"] == "CUSTOM"
    assert spec["provider"] == {"name": "dpop-verifier"}
    assert spec["selector"] == {"matchLabels": {"app": "orders"}}
    assert spec["rules"] == VARIANTS["istio"]["istio"]["authorizationPolicy"]["rules"]

    gateway = chart.render(VARIANTS["istio-gateway"]).one("AuthorizationPolicy")["spec"]
    assert "selector" not in gateway
    assert gateway["targetRefs"][0]["kind"] == "Gateway"
    assert gateway["rules"] == [{}]  # every request


def test_istio_extension_provider_fragment_points_at_the_service() -> None:
    rendered = chart.render(VARIANTS["istio"])
    fragment = yaml.safe_load(
        rendered.one("ConfigMap", f"{FULLNAME}-istio-mesh-config")["data"]["meshConfig.yaml"]
    )
    (provider,) = fragment["extensionProviders"]
    service = rendered.one("Service", FULLNAME)
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert provider == {
        "name": "dpop-verifier",
        "envoyExtAuthzGrpc": {
            "service": f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
            "port": grpc_port,
            "timeout": "500ms",
            "failOpen": False,
            "statusOnError": "503",
        },
    }
    # NOTES.txt prints the same fragment, ready to paste into istiod's meshConfig.
    notes_yaml = rendered.notes.split("with mesh-values.yaml:", 1)[1]
    notes_yaml = notes_yaml.split("\n\n", 2)[1]
    assert yaml.safe_load(notes_yaml) == {"meshConfig": fragment}


# --- development Redis --------------------------------------------------------------------------


def test_dev_redis_is_marked_development_only_and_wired() -> None:
    rendered = chart.render(VARIANTS["dev-redis"])
    deployment = rendered.one("Deployment", f"{FULLNAME}-redis")
    service = rendered.one("Service", f"{FULLNAME}-redis")
    for obj in (deployment, service):
        assert obj["metadata"]["annotations"]["dpop-verifier/purpose"] == (
            "development only, not for production"
        )
    assert "DEVELOPMENT ONLY, NOT FOR PRODUCTION" in rendered.template_text("dev-redis.yaml")
    assert "DEVELOPMENT ONLY, NOT FOR PRODUCTION" in rendered.notes
    assert rendered.env["DPOP_REPLAY_URL"] == f"redis://{FULLNAME}-redis:6379/0"
    redis = deployment["spec"]["template"]["spec"]["containers"][0]
    # The password the verifier reads from its file is the one Redis requires.
    password_env = next(e for e in redis["env"] if e["name"] == "REDIS_PASSWORD")
    assert password_env["valueFrom"]["secretKeyRef"] == {"name": FULLNAME, "key": "redis-password"}
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    # Only the verifier may talk to it.
    policy = rendered.one("NetworkPolicy", f"{FULLNAME}-redis")
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer.items() <= rendered.deployment["spec"]["template"]["metadata"]["labels"].items()


def test_notes_warn_about_a_per_pod_replay_store() -> None:
    assert "WARNING: the replay store is memory://" in chart.render().notes
    assert "WARNING: the replay store" not in chart.render(VARIANTS["existing-secrets"]).notes
    single = chart.render({"autoscaling": {"enabled": False}, "replicaCount": 1})
    assert "WARNING: the replay store" not in single.notes


# --- helm test ----------------------------------------------------------------------------------


def test_helm_test_pod_checks_grpc_health_of_the_service(variant: tuple[str, Rendered]) -> None:
    name, rendered = variant
    pods = rendered.all("Pod")
    if name == "minimal":
        assert pods == []
        return
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == rendered.verifier["image"]
    assert container["command"][-1].endswith("healthcheck.py")
    args = container["args"]
    address = args[args.index("--address") + 1]
    health_port = rendered.verifier["readinessProbe"]["grpc"]["port"]
    service = rendered.one("Service", FULLNAME)
    service_ports = {p["port"]: p for p in service["spec"]["ports"]}
    assert address == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{health_port}"
    assert service_ports[health_port]["appProtocol"] == "grpc"
    assert args[args.index("--service") + 1] == "dpop.verifier.v1.VerifierService"


# --- values.schema.json -------------------------------------------------------------------------

INVALID_VALUES = [
    ({"replicas": 2}, "additional properties 'replicas'"),
    ({"image": {"tag": "latest", "digest": "md5:abc"}}, "/image/digest"),
    ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ({"securityContext": {"runAsUser": "10001"}}, "/securityContext/runAsUser"),
    ({"tls": {"enabled": True}}, "/tls/existingSecret"),
    ({"tls": {"clientCA": {"enabled": True}, "existingSecret": "x"}}, "/tls/enabled"),
    ({"nonce": {"required": True}}, "/nonce/secret"),
    ({"nonce": {"secret": {"value": "too-short"}}}, "/nonce/secret/value"),
    ({"nonce": {"secret": {"value": NONCE, "existingSecret": "s"}}}, "/nonce/secret"),
    ({"replay": {"url": "redis://:hunter2@redis:6379/0"}}, "/replay/url"),
    ({"replay": {"url": "postgres://db/0"}}, "/replay/url"),
    ({"replay": {"password": {"value": "x", "existingSecret": "y"}}}, "/replay/password"),
    ({"config": {"settings": {"nonce_secret": NONCE}}}, "additional properties 'nonce_secret'"),
    ({"config": {"settings": {"listen": "0.0.0.0:1"}}}, "additional properties 'listen'"),
    ({"config": {"settings": {"replay_timeout_ms": 0}}}, "/config/settings/replay_timeout_ms"),
    ({"config": {"issuers": [{"issuer": "https://i"}]}}, "/config/issuers/0"),
    (
        {"config": {"issuers": [{"issuer": "https://i", "jwks_uri": "http://i/jwks"}]}},
        "/config/issuers/0/jwks_uri",
    ),
    (
        {"config": {"issuers": [{"issuer": "i", "jwks_file": "k.json", "algs": ["HS256"]}]}},
        "/config/issuers/0/algs/0",
    ),
    (
        {"config": {"issuers": [{"issuer": "i", "jwks_file": "k", "jwks_url": "https://x"}]}},
        "additional properties 'jwks_url'",
    ),
    (
        {"config": {"issuers": [{"issuer": "i", "jwks_file": "k", "introspection_secret": "s"}]}},
        "additional properties 'introspection_secret'",
    ),
    ({"config": {"files": {"config.json": "{}"}}}, "invalid propertyName 'config.json'"),
    ({"config": {"logLevel": "verbose"}}, "/config/logLevel"),
    ({"service": {"type": "LoadBalancer"}}, "/service/type"),
    ({"ports": {"grpc": 70000}}, "/ports/grpc"),
    ({"listenAddress": "127.0.0.1"}, "/listenAddress"),
    ({"devRedis": {"enabled": "yes"}}, "/devRedis/enabled"),
    ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "/metrics/enabled"),
    ({"metrics": {"enabled": False, "prometheusRule": {"enabled": True}}}, "/metrics/enabled"),
    ({"metrics": {"enabled": False, "grafanaDashboard": {"enabled": True}}}, "/metrics/enabled"),
    (
        {"metrics": {"prometheusRule": {"selector": "{job='x'}"}}},
        "/metrics/prometheusRule/selector",
    ),
    (
        {"metrics": {"prometheusRule": {"denySpike": {"ratio": 2}}}},
        "/metrics/prometheusRule/denySpike",
    ),
    (
        {"metrics": {"prometheusRule": {"latency": {"for": "soon"}}}},
        "/metrics/prometheusRule/latency",
    ),
    ({"tracing": {"enabled": True}}, "/tracing/otlpEndpoint"),
    ({"autoscaling": {"targetCPUUtilizationPercentage": 150}}, "/autoscaling"),
    ({"podDisruptionBudget": {"maxUnavailable": "lots"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"istio": {"extensionProvider": {"timeout": "1 second"}}}, "/istio/extensionProvider/timeout"),
    ({"istio": {"authorizationPolicy": {"rules": []}}}, "/istio/authorizationPolicy/rules"),
    ({"commonLabels": {"bad key!": "x"}}, "invalid propertyName 'bad key!'"),
    ({"tmpVolume": {"medium": "HugePages"}}, "/tmpVolume/medium"),
    ({"probes": {"readiness": {"periodSeconds": 0}}}, "/probes/readiness/periodSeconds"),
    ({"replay": {"url": "redis+sentinel://user:pw@s1:26379/m/0"}}, "/replay/url"),
    ({"replay": {"tls": {"certKey": "tls.crt"}}}, "/replay/tls/keyKey"),
    ({"config": {"logFormat": "xml"}}, "/config/logFormat"),
    ({"config": {"settings": {"redis_retries": 5}}}, "/config/settings/redis_retries"),
    ({"config": {"settings": {"decision_log": "some"}}}, "/config/settings/decision_log"),
    ({"config": {"routes": [{"path_prefix": "/a", "mode": "strict"}]}}, "/config/routes/0/mode"),
    ({"config": {"routes": [{"path_prefix": "/a", "nonce": True}]}}, "additional properties"),
    ({"config": {"publicBaseUrls": {"*": "ftp://x"}}}, "/config/publicBaseUrls"),
    (
        {"config": {"settings": {"upstream_header_jkt": "X-Upper"}}},
        "/config/settings/upstream_header_jkt",
    ),
]


@pytest.mark.parametrize(("values", "where"), INVALID_VALUES, ids=[w for _, w in INVALID_VALUES])
def test_schema_rejects_invalid_values(values: dict[str, Any], where: str) -> None:
    h = chart.helm()
    with pytest.raises(h.HelmValuesError) as excinfo:
        chart.validate_schema(values)
    assert where in str(excinfo.value), str(excinfo.value)
    # `helm install/template` refuse the same values.
    with pytest.raises(h.HelmValuesError):
        chart.render(values)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_schema_accepts_every_variant(name: str) -> None:
    chart.validate_schema(VARIANTS[name])


TEMPLATE_GUARDS = [
    (
        {"terminationGracePeriodSeconds": 15, "config": {"shutdownGraceSeconds": 10}},
        "terminationGracePeriodSeconds (15) must exceed",
    ),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "minReplicas must not exceed"),
    ({"istio": {"authorizationPolicy": {"enabled": True}}}, "needs selector"),
    (
        {
            "istio": {
                "authorizationPolicy": {
                    "enabled": True,
                    "selector": {"app": "x"},
                    "targetRefs": [{"kind": "Gateway", "name": "g"}],
                }
            }
        },
        "not both",
    ),
    ({"devRedis": {"enabled": True}, "replay": {"url": "redis://r:6379/0"}}, "not both"),
    ({"ports": {"health": 50051}}, "ports.health must differ"),
    ({"forwardAuth": {"enabled": True}}, "forwardAuth.trustedProxies"),
    ({"replay": {"password": {"value": "pw"}}}, "need a Redis replay.url"),
    ({"replay": {"url": "redis://r:6379/0", "sentinel": {"username": "u"}}}, "redis+sentinel"),
    ({"replay": {"url": "redis://r:6379/0", "tls": {"existingSecret": "ca"}}}, "TLS replay.url"),
    (
        {
            "replay": {
                "url": "redis+sentinel://s:26379/m/0",
                "password": {"value": "a"},
                "sentinel": {"password": {"value": "b", "key": "redis-password"}},
            }
        },
        "two inline secret values use the key",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"), TEMPLATE_GUARDS, ids=[m for _, m in TEMPLATE_GUARDS]
)
def test_templates_refuse_inconsistent_values(values: dict[str, Any], message: str) -> None:
    h = chart.helm()
    with pytest.raises(h.HelmRenderError) as excinfo:
        chart.render(values)
    assert message in str(excinfo.value)


def test_schema_covers_every_value_and_is_closed() -> None:
    schema = chart.schema()
    for path in chart.leaf_paths(chart.default_values()):
        assert chart.schema_node(schema, path) is not None, (
            f"values.schema.json does not cover {path}"
        )

    # Every object the schema describes by its properties rejects unknown keys, except the
    # pass-through Kubernetes objects listed here.
    open_objects = {"topologySpreadConstraints.items", "extraEnv.items"}

    def walk(node: dict[str, Any], where: str) -> None:
        if "properties" in node and where not in open_objects:
            assert node.get("additionalProperties") is False, f"schema {where} is open"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{where}.{key}" if where else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}.items")
        for name, child in node.get("definitions", {}).items():
            walk(child, f"definitions.{name}")

    walk(schema, "")


def test_readme_documents_every_value() -> None:
    readme = (chart.CHART_DIR / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    missing = [p for p in chart.leaf_paths(chart.default_values()) if p not in documented]
    assert not missing, f"chart README values table lacks: {missing}"
    unknown = [p for p in documented if chart.schema_node(chart.schema(), p) is None]
    assert not unknown, f"chart README documents values that do not exist: {unknown}"


# --- the service accepts what the chart renders -------------------------------------------------


def _materialize_pod_files(rendered: Rendered, root: Path) -> dict[str, str]:
    """Write what the pod would see (ConfigMap, Secrets, TLS files) under ``root`` and return
    the container's DPOP_* environment with its paths moved under ``root``."""

    def place(path: str) -> Path:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    spec = rendered.deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v) for k, v in s["data"].items()}
        for s in rendered.all("Secret")
    }
    for mount in rendered.verifier["volumeMounts"]:
        volume = volumes[mount["name"]]
        base = mount["mountPath"]
        if "configMap" in volume:
            configmap = rendered.maybe("ConfigMap", volume["configMap"]["name"])
            data = configmap["data"] if configmap else {"config.json": "{}"}  # existingConfigMap
            for key, text in data.items():
                place(f"{base}/{key}").write_text(text, encoding="utf-8")
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                (item,) = source["secret"]["items"]
                content = secrets.get(source["secret"]["name"], {}).get(item["key"], b"x" * 40)
                place(f"{base}/{item['path']}").write_bytes(content)
        elif "secret" in volume:
            for item in volume["secret"]["items"]:
                place(f"{base}/{item['path']}").write_text("PEM placeholder", encoding="utf-8")
    env = {k: v for k, v in rendered.env.items() if k.startswith("DPOP_")}
    for key, value in env.items():
        if key.endswith("_FILE"):
            env[key] = str(root / value.lstrip("/"))
    return env


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_service_config_loader_accepts_the_rendered_pod(name: str, tmp_path: Path) -> None:
    from verifier.config import load_settings

    rendered = chart.render(VARIANTS[name])
    env = _materialize_pod_files(rendered, tmp_path)
    settings = load_settings(environ=env)
    assert settings.listen == env["DPOP_LISTEN"]
    assert settings.replay_url == env["DPOP_REPLAY_URL"]
    assert settings.nonce_required == (env["DPOP_NONCE_REQUIRED"] == "true")
    if name == "kitchen-sink":
        assert [i.issuer for i in settings.issuers] == [i["issuer"] for i in ISSUERS]
        assert len(settings.routes) == 2 and settings.public_base_urls
        assert settings.upstream_header_subject == "x-user"
        assert settings.replay_timeout_ms == 75
        assert settings.shutdown_grace_seconds == 20
    if name in ("existing-secrets", "inline-secrets"):
        assert settings.nonce_secret and settings.nonce_previous_secret
    if name == "tls":
        assert settings.tls_enabled and settings.tls_client_ca_file and settings.health_listen
        assert settings.redis_ca_file and not settings.redis_cert_file
    if name == "sentinel":
        assert settings.redis_sentinel_username == "watcher"
        assert settings.redis_sentinel_password == "sentinel-pw"
        assert settings.redis_cert_file and settings.redis_key_file and not settings.redis_ca_file
        assert settings.redis_wait_replicas == 1 and settings.log_format == "text"


def test_every_service_option_has_a_home_in_the_chart() -> None:
    """Each DPOP_* option is either set by the chart from a dedicated value, or can be given
    in config.settings; secrets only through files. Fails when the service grows an option the
    chart does not know about."""
    from verifier.config import OPTIONS

    rendered = [chart.render(v) for v in VARIANTS.values()]
    set_by_chart = {k for r in rendered for k in r.env if k.startswith("DPOP_")}
    settings_keys = set(
        chart.schema()["properties"]["config"]["properties"]["settings"]["properties"]
    )
    secret_values = {o.env for o in OPTIONS if o.secret}  # only via their *_FILE variant
    unmapped = [
        o.env
        for o in OPTIONS
        if o.env not in set_by_chart
        and o.name not in settings_keys
        and o.env not in secret_values
        and o.name != "config_file"
    ]
    assert not unmapped, f"chart has no value for: {unmapped}"
    overlap = {o.name for o in OPTIONS if o.env in set_by_chart} & settings_keys
    assert not overlap, f"config.settings would be overridden by the chart's env: {overlap}"


def test_config_file_only_keys_and_routes_match_the_service() -> None:
    """The file-only config keys (issuers, routes, ...) are all rendered into config.json, and
    the schema's route entries are exactly the service's."""
    from verifier.config import _FILE_ONLY_KEYS
    from verifier.domain.model import Mode
    from verifier.domain.routes import ROUTE_KEYS

    config = json.loads(chart.render().one("ConfigMap")["data"]["config.json"])
    assert set(_FILE_ONLY_KEYS) <= set(config), "a file-only key has no chart value"
    route = chart.schema()["properties"]["config"]["properties"]["routes"]["items"]
    assert set(route["properties"]) == set(ROUTE_KEYS)
    assert set(route["properties"]["mode"]["enum"]) == {m.value for m in Mode}
    issuer = chart.schema()["definitions"]["issuer"]
    from verifier.config import IssuerSettings

    # Every issuer key of the service, except an inline secret (it would land in the ConfigMap).
    inline_secrets = {"introspection_secret"}
    assert set(issuer["properties"]) == set(IssuerSettings.__dataclass_fields__) - inline_secrets


def test_values_file_round_trips_through_the_schema() -> None:
    values = copy.deepcopy(chart.default_values())
    chart.validate_schema(values)


# --- dashboards and alerts ----------------------------------------------------------------------

ALERTS = {
    "DpopVerifierReplayStoreDown": "replay-store-down",
    "DpopVerifierDenySpike": "deny-spike",
    "DpopVerifierLatencyHigh": "latency-high",
    "DpopVerifierIssuerKeysStale": "issuer-keys-stale",
}


def test_the_dashboard_configmap_carries_the_documented_dashboard_for_the_sidecar() -> None:
    docs_copy = chart.ROOT / "docs" / "grafana" / "dpop-verifier.json"
    chart_copy = chart.CHART_DIR / "dashboards" / "dpop-verifier.json"
    assert docs_copy.read_text(encoding="utf-8") == chart_copy.read_text(encoding="utf-8")
    assert chart.render().maybe("ConfigMap", f"{FULLNAME}-dashboard") is None  # off by default
    rendered = chart.render(
        {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}}
    )
    configmap = rendered.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["dpop-verifier.json"])
    assert dashboard == json.loads(docs_copy.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "dpop-verifier"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    titles = " / ".join(p["title"] for p in panels).lower()
    for view in (
        "decisions by reason",
        "deny rate per route",
        "would-deny rate of report-only",
        "latency percentiles",
        "replay store",
        "key refreshes",
        "key-source failures",
    ):
        assert view in titles, view  # fmt: skip


def test_the_prometheus_rule_has_the_four_alerts_with_their_runbooks() -> None:
    assert chart.render().maybe("PrometheusRule") is None  # off by default
    values = {"metrics": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "id"}}}}
    rule = chart.render(values).one("PrometheusRule", FULLNAME)
    (group,) = rule["spec"]["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == set(ALERTS)
    operations = (chart.ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", operations, flags=re.M)
    }
    for alert, anchor in ALERTS.items():
        entry = rules[alert]
        assert entry["annotations"]["runbook_url"].endswith(f"/docs/operations.md#{anchor}")
        assert anchor in anchors, f"docs/operations.md has no runbook heading for {alert}"
        assert entry["labels"]["severity"] and entry["labels"]["team"] == "id"
        # This release's metrics only: the Service's name is the job a ServiceMonitor gives.
        assert f'namespace="{NAMESPACE}", job="{FULLNAME}"' in entry["expr"]
    custom = chart.render({"metrics": {"prometheusRule": {"enabled": True, "selector": 'c="eu"'}}})
    for entry in custom.one("PrometheusRule")["spec"]["groups"][0]["rules"]:
        assert 'c="eu"' in entry["expr"] and "job=" not in entry["expr"]


# --- Kubernetes service links -----------------------------------------------------------------


def _service_links(service: dict[str, Any], cluster_ip: str) -> dict[str, str]:
    """What the kubelet would inject for ``service`` (pkg/kubelet/envvars/envvars.go)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for i, port in enumerate(ports):
        number, protocol = port["port"], port.get("protocol", "TCP")
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
        url = f"{protocol.lower()}://{cluster_ip}:{number}"
        if i == 0:
            env[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{number}_{protocol}"
        env.update({link: url, f"{link}_PROTO": protocol.lower(), f"{link}_PORT": str(number),
                    f"{link}_ADDR": cluster_ip})  # fmt: skip
    return env


def test_a_pod_with_service_links_of_its_own_services_starts(tmp_path: Path) -> None:
    """The chart turns service links off; should a pod get them anyway (another chart, a
    policy that turns them on), the variables of Services named dpop-... do not stop it."""
    from tests.support.service import ServiceProcess

    rendered = chart.render(VARIANTS["dev-redis"], release="dpop-verifier")
    for _, spec in pod_specs(rendered):
        assert spec["enableServiceLinks"] is False
    env = _materialize_pod_files(rendered, tmp_path)
    links: dict[str, str] = {}
    for i, service in enumerate(rendered.all("Service")):
        links.update(_service_links(service, f"10.96.0.{10 + i}"))
    assert "DPOP_VERIFIER_SERVICE_HOST" in links and "DPOP_VERIFIER_REDIS_PORT" in links
    assert any(re.fullmatch(r"DPOP_VERIFIER_PORT_\d+_TCP_ADDR", name) for name in links)
    env.update(links)
    for name in ("DPOP_LISTEN", "DPOP_HEALTH_LISTEN", "DPOP_METRICS_LISTEN"):
        if env.get(name):
            env[name] = "127.0.0.1:0"
    env["DPOP_REPLAY_URL"] = "memory://"  # the dev Redis is not running here
    env.pop("DPOP_REDIS_PASSWORD_FILE", None)
    service = ServiceProcess(Path(env["DPOP_CONFIG_FILE"]), env)
    try:
        assert service.health_status() == "SERVING"
    finally:
        service.stop()
