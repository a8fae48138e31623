#!/usr/bin/env bash
# Build the systemd test image gpubox-test:debian12 from Debian's packages (no registry needed).
# The rootfs is made with debootstrap from the Debian mirror this machine already uses, then
# imported with systemd as its command. The image is also tagged with a hash of this script,
# so the build is skipped when that tag exists and redone when this script changes.
# It has a non-root login user, as on EC2: $TEST_USER (default ubuntu, uid 1000) with passwordless sudo.
set -o errexit -o nounset -o pipefail

IMAGE=${GPUBOX_TEST_IMAGE:-gpubox-test}
TAG=${GPUBOX_TEST_TAG:-debian12}
SUITE=bookworm
TEST_USER=${GPUBOX_TEST_USER:-ubuntu}
PACKAGES=(
  systemd systemd-sysv dbus sudo
  python3 python3-venv python3-pip python3-apt
  ca-certificates curl iproute2 procps acl openssh-server
  tmux
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi

hash=$( (cat "$0"; echo "$TEST_USER") | sha256sum | cut -c1-12)
versioned="$IMAGE:$TAG-$hash"

exec 9>/tmp/gpubox-build-test-image.lock
flock 9

if docker image inspect "$versioned" >/dev/null 2>&1; then
  docker tag "$versioned" "$IMAGE:$TAG"
  exit 0
fi

# The first Debian (non-security) mirror in this machine's apt sources, deb822 or one-line format.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -oE '(https?|ftp)://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/gpubox-rootfs.XXXXXX)
trap '$SUDO rm -rf "$rootfs"' EXIT

echo "build-test-image: debootstrap $SUITE from $mirror (about a minute)" >&2
include=$(IFS=,; echo "${PACKAGES[*]}")
$SUDO debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$mirror" >/dev/null

# The login user, as on EC2 (ubuntu on Ubuntu, ec2-user on Amazon Linux).
$SUDO chroot "$rootfs" useradd --create-home --uid 1000 --shell /bin/bash "$TEST_USER"
echo "$TEST_USER ALL=(ALL) NOPASSWD:ALL" | $SUDO tee "$rootfs/etc/sudoers.d/90-$TEST_USER" >/dev/null
$SUDO chmod 0440 "$rootfs/etc/sudoers.d/90-$TEST_USER"

# A container has no consoles and no need for these; a fresh machine-id is made at boot.
for unit in getty@tty1.service console-getty.service systemd-logind.service; do
  $SUDO ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
: | $SUDO tee "$rootfs/etc/machine-id" >/dev/null
$SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

$SUDO tar -C "$rootfs" -c . \
  | docker import -c 'CMD ["/lib/systemd/systemd"]' -c "LABEL gpubox.test-image-hash=$hash" - "$versioned" >/dev/null
docker tag "$versioned" "$IMAGE:$TAG"
echo "build-test-image: built $versioned and tagged $IMAGE:$TAG" >&2
