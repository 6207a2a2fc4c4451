#!/usr/bin/env bash
# Installs what stasis's build, demo and tests need on a Debian 12 machine, and builds the
# release binaries. Run as root. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    criu            # only for crit, the independent image decoder the tests use (never run criu itself)
    busybox-static  # container rootfs for tests
    gcc libc6-dev   # the C workload programs
    openjdk-17-jdk-headless  # JVM workloads and the CPU-feature tests
    util-linux procps
    runc containerd podman docker.io  # the runtime tests (stasis-runc, the containerd shim, podman, docker)
    nftables iproute2  # network namespaces: nft for the network lock and nftables images, ip for links/addresses/routes
    qemu-system-x86 linux-image-amd64 cpio  # the CPU-gate test boots an older CPU (TCG) with a Debian kernel
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust toolchain) is required" >&2; exit 1; }
cargo build --release --locked --workspace
