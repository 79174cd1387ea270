#!/usr/bin/env bash
# One command for a fresh machine: install what is needed, build, and run the main job:
# a busybox container run by keel-runtime from an OCI bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (containers need it): sudo $0" >&2; exit 1; }
scripts/install-deps.sh
scripts/build-release.sh
work=$(mktemp -d /tmp/keel-quickstart.XXXXXX)
trap 'target/release-static/keel-runtime --root "$work/state" delete --force quickstart >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
target/release/keel-bundle "$work/bundle" --args /bin/sh -c 'echo "hello from keel: $(hostname), pid $$, $(id)"; cat /proc/self/status | grep ^Cap'
target/release-static/keel-runtime --root "$work/state" run --bundle "$work/bundle" quickstart
