#!/usr/bin/env bash
# Installs the system packages Keel's build, tests and benchmarks need (Debian 12, as root).
set -euo pipefail
packages=(
  build-essential pkg-config libseccomp-dev   # build: libseccomp for the runtime's filters
  protobuf-compiler                           # tests: containerd-client (keel-proto's test peer) runs protoc
  busybox-static                              # test rootfs
  runc crun                                   # peers for comparison tests and benchmarks
  containerd docker.io                        # real peers for the interop tests (ctr, dockerd)
  docker-registry skopeo                      # a local registry and its pusher for the image pull tests
  iproute2 util-linux procps python3          # unshare, ip, ps in tests and benchmarks
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo is required (rustup: https://rustup.rs)" >&2; exit 1; }
