# syntax=docker/dockerfile:1.7
#
# dpop-verifier production image.
#
#   docker build -t dpop-verifier:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm --read-only --tmpfs /tmp -p 50051:50051 dpop-verifier:0.1.0
#
# Two stages: "builder" turns the project and every dependency into wheels and installs them
# into a virtualenv at /opt/venv; "runtime" is the same slim Python base with no compiler, no
# pip, no build files, only that virtualenv copied over. It runs as the numeric user 10001,
# never writes outside /tmp (so it works with a read-only root filesystem), and exposes:
#   50051  gRPC (Verifier service + grpc.health.v1 + reflection)   DPOP_LISTEN
#   50052  plaintext grpc.health.v1 only, when set (for TLS setups) DPOP_HEALTH_LISTEN
#   9464   Prometheus metrics, when set                             DPOP_METRICS_LISTEN
#
# Signals: the service is PID 1 and installs its own SIGTERM/SIGINT handlers (graceful drain
# for up to DPOP_SHUTDOWN_GRACE_SECONDS), it starts no child processes (so there are no zombies
# to reap), and health checks run via `docker exec`/kubelet outside its process tree. An init
# (tini, `docker run --init`) would add a package and nothing this process needs.
#
# Tested for real: tests/image builds this file with podman (the `docker build` command of
# docs/deploy.md) on a stand-in for the python:*-slim base made from Debian's mirror, then runs
# the image as docs/deploy.md and as the Helm chart run it, and checks it from outside.

ARG PYTHON_VERSION=3.12
ARG DEBIAN_RELEASE=trixie

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY verifier/ verifier/

# Wheels of the project and all of its dependencies (binary wheels from the index; the project
# itself is pure Python). The pip cache is a build cache mount, so it never lands in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip wheel --wheel-dir /wheels .

# A virtualenv holding exactly those wheels and nothing else: no pip, no setuptools. Offline
# (--no-index), so a dependency missing from /wheels fails the build here. pip byte-compiles
# the installed modules, so the read-only runtime never needs to write .pyc files.
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels --only-binary=:all: /wheels/*.whl \
    && /opt/venv/bin/python -c "import verifier.cli, grpc_health.v1.health"


FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/dpop-verifier/dpop-verifier
ARG PYTHON_VERSION
ARG DEBIAN_RELEASE

LABEL org.opencontainers.image.title="dpop-verifier" \
      org.opencontainers.image.description="Stateless gRPC service that verifies OAuth 2.0 DPoP proofs (RFC 9449) for Envoy/Istio ext_authz and API gateways" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="dpop-verifier" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}"

# The base image's own pip is not needed at run time: remove it (smaller attack surface, fewer
# scanner findings). The user exists only so that tools show a name; everything uses the
# numeric id, which Kubernetes' runAsNonRoot can verify.
RUN python -m pip uninstall --yes --no-cache-dir pip \
    && groupadd --system --gid 10001 dpop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin dpop

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0555 scripts/healthcheck.py /opt/dpop-verifier/healthcheck.py

ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    DPOP_LISTEN=0.0.0.0:50051 \
    DPOP_HEALTH_LISTEN=0.0.0.0:50052

WORKDIR /tmp
USER 10001:10001
EXPOSE 50051/tcp 50052/tcp 9464/tcp
STOPSIGNAL SIGTERM

# Liveness, asked on the health-only listener (DPOP_HEALTH_LISTEN, its own threads and call
# limit): SERVING from start-up until shutdown, whatever Redis does. Orchestrators that
# replace unhealthy containers must not do so for a dependency outage or an overload.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/dpop-verifier/healthcheck.py", "--quiet", "--timeout", "3", \
         "--service", "dpop.verifier.v1.Liveness"]

ENTRYPOINT ["/opt/venv/bin/dpop-verifier"]
CMD ["serve"]
