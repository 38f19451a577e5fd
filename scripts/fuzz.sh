#!/usr/bin/env bash
# Build the libFuzzer targets of fuzz/ (clang, ASan + UBSan) and run each one over its committed
# seeds (fuzz/corpus/<target>/) for a while. Stops at the first failure: the input that failed
# is in the build directory (crash-*, leak-*, timeout-*, oom-*) — see docs/hardening.md.
#
#   scripts/fuzz.sh [-b BUILD_DIR] [-t SECONDS] [-r RUNS] [-T TIMEOUT] [TARGET...]
#
# -t: seconds per target (default 5: the CI smoke); -r: stop a target after RUNS inputs
# (default: no limit); -T: seconds one input may take before it counts as a hang (default 20;
# raise it for long campaigns at low priority, where a starved process can stall that long);
# TARGET: fuzz_safetensors ... (default: all). New inputs that reach new
# code go to BUILD_DIR/corpus/<target>/, which later runs continue from.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-fuzz seconds=5 runs=-1 timeout=20
while getopts "b:t:r:T:" opt; do
  case $opt in
    b) build=$OPTARG ;;
    t) seconds=$OPTARG ;;
    r) runs=$OPTARG ;;
    T) timeout=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
((${#targets[@]})) || targets=(fuzz_safetensors fuzz_saelens fuzz_sparsify fuzz_dictionary_learning
                               fuzz_torch_pt fuzz_llama2_model fuzz_llama2_tokenizer fuzz_graph_json
                               fuzz_task fuzz_prompt_pairs fuzz_pair_templates)

# Longest input per target: a few times its largest seed.
declare -A max_len=([fuzz_safetensors]=4096 [fuzz_saelens]=4096 [fuzz_sparsify]=4096
                    [fuzz_dictionary_learning]=8192 [fuzz_torch_pt]=8192
                    [fuzz_llama2_model]=4096 [fuzz_llama2_tokenizer]=8192 [fuzz_graph_json]=4096
                    [fuzz_task]=2048 [fuzz_prompt_pairs]=2048 [fuzz_pair_templates]=2048)

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSAE_FUZZ=ON -DSAE_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j"$(nproc)" >/dev/null

# The readers' scratch files go to tmpfs when there is one.
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi
for t in "${targets[@]}"; do
  [[ -n ${max_len[$t]:-} ]] || { echo "unknown fuzz target $t" >&2; exit 2; }
  mkdir -p "$build/corpus/$t"
  log="$build/$t.log"
  status=0
  (cd "$build" && "./fuzz/$t" -max_len="${max_len[$t]}" -timeout="$timeout" -rss_limit_mb=2048 \
     -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 \
     "corpus/$t" "$OLDPWD/fuzz/corpus/$t") >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  echo "fuzz: $t: ${execs:-?} inputs, $last, exit $status"
  if ((status != 0)); then
    grep -E -A12 '^==[0-9]+==ERROR|runtime error|^SUMMARY|Test unit written' "$log" | head -40 >&2
    exit 1
  fi
done
