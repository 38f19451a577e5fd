#!/usr/bin/env bash
# The whole test suite: install, build, run every C and Python test; then the same C tests
# under AddressSanitizer + UndefinedBehaviorSanitizer; the thread test under ThreadSanitizer;
# the ABI against abi/libsae.abi; each fuzz target for a few seconds over its seeds; then
# Doxygen with warnings as errors (docs/hardening.md).
# Each public header is compiled alone as C99 -pedantic -Werror and as C++ by the build itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

echo "== build and test (Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build and test (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSAE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
# The Python suite loads libsae into an uninstrumented interpreter and the install test
# builds a consumer: both run in the Release pass above. test_recovery trains two SAEs on 1M
# rows each (about 1 minute in Release, 10 under ASan); it runs in the Release pass, and its
# code paths are the ones test_trainer covers under ASan.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" \
  -E '^(python|install_consumer|test_recovery)$'

echo "== ThreadSanitizer (one dictionary shared by encoding threads)"
# Only the library and the one test: the other programs add nothing here.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAE_TSAN=ON >/dev/null
cmake --build build-tsan --target test_threads -j"$jobs"
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -R '^test_threads$'

echo "== ABI (the ASan build's libsae.so, which has debug information, against abi/)"
bash scripts/abi-check.sh build-asan

echo "== fuzz smoke (clang; each target 5 s, after replaying its committed seeds)"
bash scripts/fuzz.sh -b build-fuzz -t 5

echo "== documentation (Doxygen, warnings are errors)"
cmake --build build --target docs

echo "test suite: all passed"
