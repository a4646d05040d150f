#!/usr/bin/env bash
# Installs every system package HostKit's build, demo and tests need on Debian 12.
# Idempotent: packages already present are skipped quickly. Runs as root (or with sudo).
set -euo pipefail

PKGS=(
  etcd-server etcd-client        # the production store, and the conformance suite's real etcd
  protobuf-compiler libprotobuf-dev  # the etcd-client crate compiles etcd's protobufs
  openssh-server openssh-client  # test hosts and the demo host
  systemd-container debootstrap  # booted systemd test hosts (systemd-nspawn)
  iproute2 nftables caddy        # network namespaces and renderer validators
  prometheus                     # promtool and a real Prometheus for alerting tests
  git curl ca-certificates apt-utils pkg-config
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# None of these packages may leave a daemon running on a machine without systemd,
# but be sure: the tests start their own etcd/sshd on free ports.
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
echo "install-deps: system packages ready" >&2
