#!/usr/bin/env bash
# The system tools the slow tests drive for real, from Debian: the Docker daemon and
# docker-compose (tests/test_containers.py), debootstrap (the stand-in base image) and the
# Prometheus server and promtool (tests/api/test_prometheus.py), and Chromium, which Playwright
# drives for the dashboard's browser tests (executable_path=/usr/bin/chromium: no browser
# download), and wrk, the load generator of `make bench`'s http section (bench/http.py; make
# bench runs this script through `services`). Idempotent: installs only
# what is missing, so `make test` pays for it once per machine.
set -eu
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need dockerd docker.io
need docker-compose docker-compose
need debootstrap debootstrap
need prometheus prometheus
need promtool prometheus
need chromium chromium
need wrk wrk
if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "FATAL: missing ${missing[*]} and not root to install them" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends: prometheus recommends a node exporter and more we do not run.
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
# Debian's packages start their services where systemd runs; the tests start their own.
