#!/usr/bin/env bash
# Builds (once) the Debian 12 image that HostKit's test hosts boot with systemd-nspawn, and a
# small local apt repository for package tests (test hosts have no internet). Both are cached
# under /var/cache/hostkit, keyed by a hash of this script, outside the checkout.
# Prints three lines: the unpacked image root (booted read-only with --volatile=overlay, so
# one copy serves every test host), the apt repository folder, and the image tarball.
set -euo pipefail

PKGS="systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,nftables,python3,curl,ca-certificates,git"
REPO_PKGS=(tree)
KEY=$(printf '%s %s' "$PKGS" "image-v1" | sha256sum | cut -c1-12)
CACHE=${HOSTKIT_CACHE:-/var/cache/hostkit}
IMAGE="$CACHE/testhost-$KEY.tar.zst"
DEBS="$CACHE/debs-$KEY"
mkdir -p "$CACHE"

mirror() {
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  if [ -z "$uri" ]; then
    uri=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -s "$IMAGE" ]; then
  exec 9>"$CACHE/.image.lock"
  flock 9
  if [ ! -s "$IMAGE" ]; then
    ROOT=$(mktemp -d "$CACHE/root.XXXXXX")
    trap 'rm -rf "$ROOT"' EXIT
    echo "test-host-image: debootstrap into $ROOT (about a minute, once)" >&2
    debootstrap --variant=minbase --include="$PKGS" bookworm "$ROOT" "$(mirror)" >/dev/null
    rm -f "$ROOT/etc/hostname"
    # sshd: keys only; root logs in with the key bound in by the harness.
    mkdir -p "$ROOT/root/.ssh" && chmod 700 "$ROOT/root/.ssh"
    printf 'PermitRootLogin prohibit-password\nPasswordAuthentication yes\nUseDNS no\n' \
      > "$ROOT/etc/ssh/sshd_config.d/hostkit-test.conf"
    # The only apt source is the local repository the harness binds in.
    rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*
    echo 'deb [trusted=yes] file:/srv/debs ./' > "$ROOT/etc/apt/sources.list.d/local.list"
    # Boot faster: nothing in a test host needs these.
    for u in systemd-timesyncd apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
      rm -f "$ROOT"/etc/systemd/system/*.wants/"$u"* 2>/dev/null || true
    done
    chmod 755 "$ROOT"   # mktemp made it 0700; as the machine's / that locks daemons out
    tar -C "$ROOT" --zstd -cf "$IMAGE.tmp" .
    mv "$IMAGE.tmp" "$IMAGE"
  fi
fi

if [ ! -s "$DEBS/Packages" ]; then
  mkdir -p "$DEBS"
  (cd "$DEBS" && apt-get download "${REPO_PKGS[@]}" >/dev/null 2>&1 && apt-ftparchive packages . > Packages.tmp && mv Packages.tmp Packages)
fi

ROOTFS="$CACHE/root-$KEY"
if [ ! -e "$ROOTFS/.complete" ]; then
  exec 8>"$CACHE/.unpack.lock"
  flock 8
  if [ ! -e "$ROOTFS/.complete" ]; then
    rm -rf "$ROOTFS.tmp" && mkdir -p "$ROOTFS.tmp"
    tar -C "$ROOTFS.tmp" --zstd -xf "$IMAGE"
    rm -rf "$ROOTFS" && mv "$ROOTFS.tmp" "$ROOTFS" && touch "$ROOTFS/.complete"
  fi
fi

echo "$ROOTFS"
echo "$DEBS"
echo "$IMAGE"
