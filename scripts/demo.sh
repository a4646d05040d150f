#!/usr/bin/env bash
# The one command that installs what HostKit needs and runs it on the embedded store:
# builds hostkit and hkctl, starts `hostkit serve`, applies the example manifests and
# shows what was stored. The server keeps running until Ctrl-C (DEMO_EXIT=1 stops it
# after the tour); in another terminal, `target/release/hkctl get services` works as is.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
cargo build --release --bins --quiet -p hostkit-controller -p hkctl

DATA="${HOSTKIT_DATA_DIR:-$PWD/.hostkit}"
LISTEN="${HOSTKIT_LISTEN:-127.0.0.1:7443}"
HOSTKIT=target/release/hostkit
HKCTL=target/release/hkctl

"$HOSTKIT" serve --listen "$LISTEN" --data-dir "$DATA" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
until curl -sf "http://$LISTEN/readyz" >/dev/null; do sleep 0.1; done

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
export HKCTL_SERVER="http://$LISTEN" HKCTL_TOKEN="$(cat "$DATA/admin.token")"
step "$HKCTL" apply -f manifests/examples/
step "$HKCTL" get services -o wide
step "$HKCTL" get hosts
step "$HKCTL" get policywindows
step "$HKCTL" describe service exograph
step "$HKCTL" diff -f manifests/examples/toys.yaml || true

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo
echo "hostkit serve is running on http://$LISTEN (data in $DATA); Ctrl-C stops it."
wait $SERVER
