#!/usr/bin/env bash
# The one command that installs what HostKit needs and runs its main job on the embedded
# store against a real demo host: builds hostkit and hkctl, boots a Debian 12 test host
# (systemd-nspawn in its own network namespace, reached over SSH), starts `hostkit serve`,
# applies manifests/demo/hello.yaml and shows the Service become Ready and its unit run on
# the host. Ctrl-C stops everything and cleans up (DEMO_EXIT=1 stops after the tour).
# Needs root (network namespaces and containers).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
cargo build --release --bins --quiet -p hostkit-controller -p hkctl

LISTEN="${HOSTKIT_LISTEN:-127.0.0.1:7443}"
HOSTKIT=$PWD/target/release/hostkit
HKCTL=$PWD/target/release/hkctl
NS=hk-demo
GW=10.231.255.253
ADDR=10.231.255.254
WORK=$(mktemp -d)
# A fresh store each run: the demo host is fresh too, and a store kept from an earlier run
# would show that run's status (Ready) before the controller has looked at the new host.
DATA="${HOSTKIT_DATA_DIR:-$WORK/data}"
SERVER=""
NSPAWN=""

cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  if [ -n "$NSPAWN" ]; then
    kill "$NSPAWN" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NSPAWN" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  ip link del "${NS}h" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "demo: preparing the test-host image (cached after the first run)"
{ read -r ROOTFS; read -r DEBS; } < <(./scripts/test-host-image.sh)
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
HOSTKEY=$(cut -d' ' -f1,2 "$ROOTFS/etc/ssh/ssh_host_ed25519_key.pub")

ip netns del "$NS" 2>/dev/null || true
ip link del "${NS}h" 2>/dev/null || true
ip netns add "$NS"
ip link add "${NS}h" type veth peer name "${NS}c"
ip link set "${NS}c" netns "$NS"
ip addr add "$GW/30" dev "${NS}h" && ip link set "${NS}h" up
ip -n "$NS" addr add "$ADDR/30" dev "${NS}c"
ip -n "$NS" link set "${NS}c" up && ip -n "$NS" link set lo up
systemd-nspawn -b -q --register=no --keep-unit -D "$ROOTFS" -M "$NS" --hostname=demo-host \
  --network-namespace-path="/run/netns/$NS" --capability=CAP_NET_ADMIN,CAP_BPF --system-call-filter=bpf --volatile=overlay \
  --bind-ro="$WORK/authorized_keys:/root/.ssh/authorized_keys" --bind-ro="$DEBS:/srv/debs" \
  --console=read-only >"$WORK/console.log" 2>&1 </dev/null &
NSPAWN=$!
SSH=(ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 -i "$WORK/id_ed25519" "root@$ADDR")
for _ in $(seq 300); do
  state=$("${SSH[@]}" systemctl is-system-running --wait 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
echo "demo: test host demo-host is up at $ADDR"

mkdir -p "$DATA"
HKCTL_CONFIG="$WORK/hkctl.yaml" "$HOSTKIT" serve --listen "$LISTEN" --data-dir "$DATA" --settle 500ms 2>"$WORK/server.log" &
SERVER=$!
until curl -sf "http://$LISTEN/readyz" >/dev/null; do sleep 0.1; done
export HKCTL_SERVER="http://$LISTEN" HKCTL_TOKEN="$(cat "$DATA/admin.token")"

sed -e "s|@ADDRESS@|$ADDR|" -e "s|@KEY@|$WORK/id_ed25519|" -e "s|@HOSTKEY@|$HOSTKEY|" \
  manifests/demo/hello.yaml > "$WORK/hello.yaml"

# Bold commands on a terminal only; a log file gets plain text.
if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$N"; "$@"; }
step "$HKCTL" apply -f "$WORK/hello.yaml"
printf '\nwaiting for service/hello to become Ready'
for _ in $(seq 120); do
  if "$HKCTL" get service hello -o json 2>/dev/null | grep -q '"Converged"'; then break; fi
  printf '.'; sleep 0.5
done
echo
step "$HKCTL" get hosts -o wide
step "$HKCTL" get services -o wide
step "$HKCTL" describe service hello
printf '\n%s$ ssh root@%s systemctl is-active demo-hello.service; curl -s 127.0.0.1:8080%s\n' "$B" "$ADDR" "$N"
"${SSH[@]}" 'systemctl is-active demo-hello.service; curl -s http://127.0.0.1:8080/index.html'

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
cat <<TRY

hostkit serve is running on http://$LISTEN (data in $DATA), managing demo-host at $ADDR.
Try, in another terminal:

  export HKCTL_CONFIG=$WORK/hkctl.yaml PATH=$(dirname "$HKCTL"):\$PATH
  hkctl get services -w                        # a row when a column changes
  hkctl logs service/hello -f                  # the unit's journal, read over SSH
  ${SSH[*]} 'echo x > /srv/demo/hello/index.html'
  hkctl reconcile service/hello --wait         # repaired now, not at the next resync
  hkctl describe service hello                 # conditions and events (DriftDetected, DriftRepaired)
  hkctl history service/hello

Ctrl-C stops the server and the host and cleans up.
TRY
wait "$SERVER"
