#!/usr/bin/env bash
# Install the Debian 12 packages libsae needs to build, test and document itself (as root).
set -euo pipefail
packages=(
  build-essential cmake pkg-config          # toolchain
  libblis-dev liblapacke-dev                # BLAS (BLIS) and LAPACKE
  libcjson-dev libzip-dev                   # JSON configs, PyTorch .pt archives
  libcmocka-dev                             # C tests
  python3 python3-numpy python3-pytest      # Python bindings and their tests
  doxygen                                   # API reference (warnings are errors in CI)
  clang libclang-rt-14-dev libomp-dev       # libFuzzer targets (fuzz/, scripts/fuzz.sh)
  abigail-tools                             # ABI check against abi/ (scripts/abi-check.sh)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
