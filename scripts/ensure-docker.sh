#!/usr/bin/env bash
# Make sure a Docker engine is installed and running, for the molecule tests.
# Installs Debian's docker.io (and debootstrap, used by build-test-image.sh) when missing,
# starts dockerd in the background when `docker info` fails, and waits for its socket.
# Idempotent and quiet when everything is already there. Needs root (or sudo).
set -o errexit -o nounset -o pipefail

SOCKET=/var/run/docker.sock
LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi

# Serialise concurrent runs (several test targets may call this at once).
exec 9>/tmp/gpubox-ensure-docker.lock
flock 9

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ensure-docker: installing ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd (log: $LOG)" >&2
  # fd 9 (the lock) must not leak into the daemon.
  $SUDO sh -c "nohup dockerd >>'$LOG' 2>&1 </dev/null &" 9>&-
fi

for _ in $(seq "$WAIT_SECONDS"); do
  if [ -S "$SOCKET" ] && docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not come up within ${WAIT_SECONDS}s; see $LOG" >&2
exit 1
