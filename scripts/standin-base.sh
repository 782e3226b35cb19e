#!/bin/sh
# A local stand-in for the official python:<version>-slim-<release> image, from Debian's mirror,
# for machines that reach Debian's packages and PyPI but no container registry.
#
#   scripts/standin-base.sh trixie /var/tmp/python-slim-trixie.tar
#   podman import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
#       --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
#       /var/tmp/python-slim-trixie.tar docker.io/library/python:3.13-slim-trixie
#   podman build --pull=never --format docker --build-arg PYTHON_VERSION=3.13 ...
#
# What it holds: a minbase Debian <release> (mmdebstrap; no documentation, man pages or
# locales, no apt lists or caches, like the official slim images), Debian's python3, and a
# virtualenv at /usr/local, so that `python` and a pip that can uninstall itself sit where the
# official image has them. The host's CA bundle replaces Debian's, so that pip inside a build
# trusts what this machine trusts on its way to the package index. Debian's Python is the
# release's own (3.13 on trixie, 3.11 on bookworm), not necessarily the Dockerfile's default.
#
# Writes the root filesystem as a tar file to OUT and prints Python's version (X.Y.Z) as the
# last line. Needs root and mmdebstrap (`make install-image-tools`).
set -eu

release=${1:?usage: standin-base.sh RELEASE OUT.tar [MIRROR]}
out=${2:?usage: standin-base.sh RELEASE OUT.tar [MIRROR]}
mirror=${3:-http://deb.debian.org/debian}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

command -v mmdebstrap >/dev/null || {
    echo "standin-base.sh: mmdebstrap is not installed (make install-image-tools)" >&2
    exit 2
}
[ -r "$ca_bundle" ] || {
    echo "standin-base.sh: no CA bundle at $ca_bundle" >&2
    exit 2
}

version_file=$(mktemp)
trap 'rm -f "$version_file"' EXIT
export version_file

mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
    --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" python3 -m venv /usr/local' \
    --customize-hook="upload $ca_bundle /etc/ssl/certs/ca-certificates.crt" \
    --customize-hook='chroot "$1" /usr/local/bin/python -c "import platform; print(platform.python_version())" > "$version_file"' \
    "$release" "$out" "$mirror"

cat "$version_file"
