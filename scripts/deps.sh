#!/usr/bin/env bash
# Installs every Debian package dpgate's build, tests, demo and perf harness need.
# Usage: scripts/deps.sh        (idempotent; runs apt-get update at most once)
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config g++ python3
  dpdk dpdk-dev libdpdk-dev dpdk-doc libpcap-dev
  libconfig++-dev libhyperscan-dev catch2
  # tests and demo: namespaces, peers, oracles
  iproute2 ethtool iptables nfacct iputils-ping curl netcat-openbsd tcpdump procps
  # fuzzing and sanitizers
  clang libclang-rt-14-dev
  # perf plots
  gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
