#!/usr/bin/env bash
# A stand-in for python:3.11-slim where Docker Hub cannot be reached: Debian bookworm by
# debootstrap, its Python 3.11 as `python` with pip installing system-wide (as in the
# official image). Cached: skipped when an image with this tag was built from this script.
# Usage: scripts/base-image.sh [TAG]   (prints the tag)
set -eu
TAG="${1:-netfit-test/python:3.11-slim}"
KEY="$(sha256sum "$0" | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "netfit.base.key" }}' "$TAG" 2>/dev/null)" = "$KEY" ]; then
  echo "$TAG"; exit 0
fi
# The mirror this machine's apt already uses (never a host name written here).
MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)}"
[ -n "$MIRROR" ] || MIRROR="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)"
ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >&2
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import \
  -c "LABEL netfit.base.key=$KEY" -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$TAG" >&2
echo "$TAG"
