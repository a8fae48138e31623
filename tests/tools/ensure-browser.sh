#!/usr/bin/env bash
# Make sure a headless browser is installed, for the end-to-end JupyterLab tests (tests/e2e/).
# Installs Debian's chromium when /usr/bin/chromium is missing; Playwright drives it through
# executable_path, since Playwright's own browser download cannot work here (never `playwright install`).
# Idempotent and quiet when chromium is already there. Needs root (or sudo).
set -o errexit -o nounset -o pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi

echo "ensure-browser: installing chromium" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
  echo "ensure-browser: $CHROMIUM is still missing after installing chromium" >&2
  exit 1
fi
