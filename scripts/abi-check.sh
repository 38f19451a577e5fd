#!/usr/bin/env bash
# Check the ABI of a built libsae.so against the baseline abi/libsae.abi (libabigail), or
# write the baseline at a release (docs/hardening.md):
#
#   scripts/abi-check.sh [BUILD_DIR]           compare; exit 1 on an incompatible change
#   scripts/abi-check.sh --update [BUILD_DIR]  write abi/libsae.abi from BUILD_DIR
#
# BUILD_DIR (default build-asan, which scripts/test.sh makes) must be a build with debug
# information (Debug or RelWithDebInfo): abidw reads the types from its libsae.so. Without a
# libsae.so there, the script configures a Debug build in BUILD_DIR and builds the library.
#
# Compatible (STYLE.md, "ABI"): new functions, new enum values, and fields appended to a
# versioned struct (one whose first field is `uint32_t struct_size`; the library reads
# min(struct_size, sizeof)). Everything else abidiff reports is incompatible: a removed or
# changed function, a changed parameter or return type, a struct of another kind that changes
# size, a field removed, reordered, retyped or inserted before the end.
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
if [[ ${1:-} == --update ]]; then update=1; shift; fi
build=${1:-build-asan}
if [[ ! -e $build/libsae.so ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$build" --target sae -j"$(nproc)" >/dev/null
fi
lib=$(readlink -f "$build/libsae.so")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

abidw --no-corpus-path --no-comp-dir-path --short-locs --no-elf-needed \
  --headers-dir include/sae --drop-private-types --out-file "$tmp/libsae.abi" "$lib"
if ((update)); then
  cp "$tmp/libsae.abi" abi/libsae.abi
  echo "abi-check: wrote abi/libsae.abi from $lib"
  exit 0
fi

# The versioned structs of the public headers, each `typedef struct NAME {` followed by
# `uint32_t struct_size;`.
versioned=$(awk '/^typedef struct [a-z_0-9]+ \{/ {name = $3; next}
                 name && /^ *uint32_t struct_size;/ {print name}
                 {name = ""}' include/sae/*.h | paste -sd'|')
cat >"$tmp/versioned.supp" <<SUPP
[suppress_type]
  type_kind = struct
  name_regexp = ^($versioned)\$
  has_data_member_inserted_at = end
  has_size_change = yes
SUPP

# 1. Everything but additions (--no-added-syms) and fields appended to versioned structs.
status=0
abidiff --no-added-syms --suppressions "$tmp/versioned.supp" abi/libsae.abi "$tmp/libsae.abi" \
  >"$tmp/report" || status=$?
# 2. That suppression also hides a versioned struct whose fields were reordered or removed
#    while its size changed (libabigail 2.2 matches it when nothing was inserted): any change
#    or deletion of an existing field in the full report is incompatible.
abidiff --no-added-syms abi/libsae.abi "$tmp/libsae.abi" >"$tmp/full" || true
members=$(grep -cE 'data members? (changes?|deletions?)' "$tmp/full" || true)
if ((status != 0 || members != 0)); then
  if ((status & 1 || status & 2)); then
    echo "abi-check: abidiff failed (exit $status)" >&2
  fi
  echo "abi-check: incompatible ABI change against abi/libsae.abi:" >&2
  cat "$tmp/full" >&2
  exit 1
fi
abidiff abi/libsae.abi "$tmp/libsae.abi" >"$tmp/all" || true
added=$(sed -n 's/^Functions changes summary: .*, \([0-9]*\) Added.*/\1/p' "$tmp/all")
echo "abi-check: compatible with abi/libsae.abi (${added:-0} functions added; fields appended to versioned structs are allowed)"
