#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser tests (tests/dashboard/test_browser.py, driven by
# Playwright with executable_path=/usr/bin/chromium: no browser download). Idempotent: installs
# only when it is missing, so `make test` pays for it once per machine.
set -eu
if [ -x /usr/bin/chromium ]; then
  echo "chromium present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "FATAL: /usr/bin/chromium is missing and not root to install it (apt-get install chromium)" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
