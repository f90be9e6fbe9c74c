#!/usr/bin/env bash
# Installs what building and testing paci needs (Debian/Ubuntu). Idempotent: does nothing when
# every package is already installed.
set -euo pipefail

# libeigen3-dev and fortunes: the training demonstration (examples/lm: Eigen for the model, the
# fortunes package's text to train on).
packages=(cmake ninja-build g++ catch2 libbenchmark-dev libopenmpi-dev openmpi-bin libeigen3-dev fortunes)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup-deps: not a Debian-based system; install CMake >= 3.25, Ninja, a C++20 compiler," \
       "Catch2, Google Benchmark and Eigen 3 (and, for paci::mpi, an MPI implementation) yourself" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup-deps: need root or sudo to install ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
