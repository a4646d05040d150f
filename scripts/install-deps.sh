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
  zstd                           # the cached test-host image
  git curl ca-certificates pkg-config
  apt-utils                      # apt-ftparchive: the package tests build their own apt repository
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
  # etcd-server, openssh-server, caddy and prometheus would start their daemons on
  # their default ports; HostKit's tests start their own on free ports, so keep the
  # packaged ones from starting during the install (the usual policy-rc.d switch).
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$created_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
# The semantic package table is checked against Debian's index: make sure apt has read one.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  # Debian 12's own rustc (1.63) is too old for this workspace (edition 2024).
  echo "install-deps: installing the Rust toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  echo "install-deps: Rust installed in ~/.cargo/bin; add it to PATH (source ~/.cargo/env)" >&2
fi
echo "install-deps: system packages ready" >&2
