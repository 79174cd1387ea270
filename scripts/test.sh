#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests (as root,
# on the real kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (integration tests make containers): sudo $0" >&2; exit 1; }
scripts/install-deps.sh
# Every locked package, for all platforms: builds fetch only this one's, but proto's descriptor
# test reads `cargo metadata --offline`, which resolves them all.
cargo fetch --locked
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads="${KEEL_TEST_THREADS:-4}"
