#!/usr/bin/env bash
# Installs the Debian packages Lockstep needs to build and test, if any are missing.
# Called by `make bench` and `make test`; safe to run again (it only installs what is absent).
set -euo pipefail

# libhwloc-dev: topology (optional at build time); openmpi: the mpirun test and lockstep/mpi.h (optional).
packages=(g++ make cmake pkg-config libgtest-dev libgmock-dev libbenchmark-dev iproute2 clang libclang-rt-14-dev
  libhwloc-dev libopenmpi-dev openmpi-bin)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "lockstep: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "lockstep: run as root or install them yourself: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
${SUDO:-} apt-get update -qq
${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}"
