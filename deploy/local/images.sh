#!/usr/bin/env bash
# `make images`: builds spendpipe's images with podman on a machine that cannot pull from an
# image registry, only from Debian's, PyPI's and Maven Central's package repositories.
#
# First the local bases, each once (kept in podman's store; --rebuild-bases builds them anew):
#   localhost/spendpipe-local/debian:bookworm    Debian bookworm from Debian's packages (debootstrap)
#   localhost/spendpipe-local/python:3.11-bookworm  Debian's Python 3.11 on it (python.Dockerfile)
#   localhost/spendpipe-local/kafka:KAFKA        the Maven Central broker jars on Debian's JRE (kafka/)
#   localhost/spendpipe-local/litellm:vLITELLM   LiteLLM from PyPI (litellm.Dockerfile)
# then, on every run (the layer cache makes an unchanged one quick):
#   localhost/spendpipe-local/prometheus:bookworm  Debian's Prometheus package (prometheus/)
# and the real images, services/Dockerfile and services/gateway/Dockerfile unchanged, through
# their base-image build arguments:
#   localhost/spendpipe:TAG  localhost/spendpipe-gateway:TAG   (TAG: $IMAGE_TAG, default "local")
#
# Builds use the host's network and see the host's CA bundle and a pip.conf trusting it (mounted
# for the build only, never stored in an image), so a machine whose egress is intercepted by a
# proxy with its own CA still reaches PyPI. deploy/local/containers.conf holds the podman
# settings such machines need (CONTAINERS_CONF, unless already set).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
LITELLM_VERSION=$(sed -n 's/^ARG LITELLM_VERSION=//p' "$ROOT/services/gateway/Dockerfile")
TAG=${IMAGE_TAG:-local}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

LOCAL=localhost/spendpipe-local
DEBIAN_IMAGE=$LOCAL/debian:bookworm
PYTHON_IMAGE=$LOCAL/python:3.11-bookworm
KAFKA_IMAGE=$LOCAL/kafka:$KAFKA_VERSION
LITELLM_IMAGE=$LOCAL/litellm:v$LITELLM_VERSION
PROMETHEUS_IMAGE=$LOCAL/prometheus:bookworm

die() { echo "images: $*" >&2; exit 1; }
say() { echo "images: $*" >&2; }

rebuild_bases=false
for arg in "$@"; do
  case "$arg" in
    --rebuild-bases) rebuild_bases=true ;;
    *) die "unknown option $arg (only --rebuild-bases)" ;;
  esac
done

command -v podman >/dev/null || die "podman not found: dev/install-podman.sh installs it (Debian's packages)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What every RUN of a build may use: the host network, and the host's trust for TLS.
build_opts=(--network host --layers)
ca_bundle=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca_bundle" ]; then
  printf '[global]\ncert = %s\n' "$ca_bundle" >"$work/pip.conf"
  build_opts+=(--volume "$ca_bundle:$ca_bundle:ro" --volume "$work/pip.conf:/etc/pip.conf:ro")
fi

wanted() { $rebuild_bases || ! podman image exists "$1"; }

if wanted "$DEBIAN_IMAGE"; then
  command -v debootstrap >/dev/null || die "debootstrap not found: dev/install-podman.sh installs it"
  say "building $DEBIAN_IMAGE from $MIRROR (debootstrap, a few minutes)"
  rootfs=$work/rootfs
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -c . | podman import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
fi

if wanted "$PYTHON_IMAGE"; then
  say "building $PYTHON_IMAGE"
  podman build "${build_opts[@]}" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$PYTHON_IMAGE" \
    -f "$HERE/python.Dockerfile" "$HERE"
fi

if wanted "$KAFKA_IMAGE"; then
  say "building $KAFKA_IMAGE"
  "$ROOT/deploy/kafka/kafka-local.sh" fetch
  podman build "${build_opts[@]}" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$KAFKA_IMAGE" \
    --build-context "jars=${SPENDPIPE_KAFKA_LIBS:-$ROOT/.cache/kafka/libs-$KAFKA_VERSION}" \
    --build-context "kafka=$ROOT/deploy/kafka" "$HERE/kafka"
fi

if wanted "$LITELLM_IMAGE"; then
  say "building $LITELLM_IMAGE"
  podman build "${build_opts[@]}" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
    --build-arg "LITELLM_VERSION=$LITELLM_VERSION" -t "$LITELLM_IMAGE" -f "$HERE/litellm.Dockerfile" "$ROOT"
fi

say "building $PROMETHEUS_IMAGE"
podman build "${build_opts[@]}" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$PROMETHEUS_IMAGE" "$HERE/prometheus"

say "building localhost/spendpipe:$TAG and localhost/spendpipe-gateway:$TAG"
podman build "${build_opts[@]}" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
  -t "localhost/spendpipe:$TAG" -f "$ROOT/services/Dockerfile" "$ROOT"
podman build "${build_opts[@]}" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "LITELLM_IMAGE=$LITELLM_IMAGE" \
  -t "localhost/spendpipe-gateway:$TAG" -f "$ROOT/services/gateway/Dockerfile" "$ROOT"
