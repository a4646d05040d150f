#!/usr/bin/env bash
# The one command that installs what HostKit's tests need and runs all of them:
# unit tests, the store conformance suite (embedded and a real etcd), property tests,
# and end-to-end tests of the real `hostkit serve` and `hkctl` binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
cargo build --workspace --bins --quiet
# The e2e harness builds the binaries itself too; this keeps the build output in one place.
HOSTKIT_E2E_NO_BUILD=1 cargo test --workspace --no-fail-fast
