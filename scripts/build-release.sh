#!/usr/bin/env bash
# Release build of keel-runtime and containerd-shim-keel-v2 as static, non-PIE binaries: no
# dynamic loader at start and a smaller resident set for every container (measured: keel-runtime
# 3.2 MiB peak vs 5.0 MiB dynamic; one shim per container stays resident).
# Output: target/release-static/{keel-runtime,containerd-shim-keel-v2} (and the other release
# binaries in target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps RUSTFLAGS off build scripts and proc-macros, which cannot be static.
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="/usr/lib/$(gcc -print-multiarch)" \
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
  cargo build --release --target "$host" -p keel-runtime -p keel-shim
mkdir -p target/release-static
for bin in keel-runtime containerd-shim-keel-v2; do
  cp "target/$host/release/$bin" "target/release-static/$bin"
done
cargo build --release -p keel-integration-tests --bin keel-bundle
