#!/usr/bin/env bash
# The circuit demo of docs/circuits.md on stories260K: SAEs trained by libsae on every residual
# hook point, two behaviours from the templates here, their circuits by attribution patching,
# integrated gradients and exact patching (on a subset), the rank agreement of the three, the
# circuits as SVG (Graphviz) with features labelled by the tokens they fire on, and
# faithfulness against circuit size.
#
# usage: examples/circuits/demo.sh BUILD_DIR SHARED_DATA_DIR WORK_DIR [DOCS_DIR]
# DOCS_DIR (e.g. docs/circuits) receives the SVGs and the JSON of the curves. Steps whose
# outputs exist in WORK_DIR (activations, SAEs, exact effects) are not redone. PYTHON names a
# python3 with numpy (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$1" data="$2" work="$3" docs="${4:-$3}"
sae="$build/examples/sae" capture="$build/examples/sae_stories_acts"
model="$data/stories260K.bin" tok="$data/tok512.bin"
hooks=(resid_pre.0 resid_post.0 resid_post.1 resid_post.2 resid_post.3 resid_post.4)
python="${PYTHON:-python3}"  # with numpy
export SAE_LIBRARY="$build/libsae.so" PYTHONPATH="$here/../../bindings/python"
mkdir -p "$work" "$docs"

# 1. Activations of 256 sampled stories of 256 tokens at every residual hook point, one TopK
#    SAE (256 features, k 16) per hook point, and feature labels from the tokens they fire on.
if [ ! -f "$work/acts/tokens.i32" ]; then
    "$capture" "$model" "$tok" "$work/acts" 256 256 1 "${hooks[@]}"
fi
dicts=()
for h in "${hooks[@]}"; do
    if [ ! -d "$work/saes/$h" ]; then
        "$sae" train --data "$work/acts/$h.f32" --raw-d 64 --arch topk --d-sae 256 --k 16 \
            --steps 3000 --batch 1024 --shuffle 65536 --seed 1 --out "$work/saes/$h" >/dev/null
    fi
    "$sae" eval "$work/saes/$h" --data "$work/acts/$h.f32" --raw-d 64 --json > "$work/eval_$h.json"
    dicts+=("$h=$work/saes/$h")
done
"$python" "$here/label_features.py" "$tok" "$work/acts" "$work/labels.tsv" "${dicts[@]}"

for b in pronoun possessive; do
    # 2. 100 prompt pairs from the template; the first 25 for the comparison with exact patching.
    "$sae" circuit pairs --template "$here/templates/$b.json" --tokenizer "$tok" --n 100 \
        --seed 1 --out "$work/$b.jsonl"
    head -n 25 "$work/$b.jsonl" > "$work/$b.25.jsonl"
    common=(--model "$model" --tokenizer "$tok" --dicts "${dicts[@]}")
    # 3. The circuit by integrated gradients on all pairs, rendered.
    "$sae" circuit "${common[@]}" --pairs "$work/$b.jsonl" --method ig --labels "$work/labels.tsv" \
        --out "$work/$b.ig.json" --svg "$docs/$b.svg" --max-nodes 30 | tee "$work/$b.ig.txt"
    # 4. AtP, IG and exact node effects on 25 pairs, and how they rank nodes alike.
    for m in atp ig exact; do
        if [ "$m" != exact ] || [ ! -f "$work/$b.25.exact.json" ]; then
            "$sae" circuit "${common[@]}" --pairs "$work/$b.25.jsonl" --method "$m" --no-edges \
                --out "$work/$b.25.$m.json" > "$work/$b.25.$m.txt"
        fi
    done
    for pair in "atp exact" "ig exact" "atp ig"; do
        set -- $pair
        "$sae" circuit compare "$work/$b.25.$1.json" "$work/$b.25.$2.json" --json \
            > "$work/$b.compare.$1.$2.json"
    done
    # 5. Faithfulness and completeness against circuit size, error nodes treated as nodes and
    #    kept.
    for e in nodes keep; do
        "$sae" circuit eval "${common[@]}" --pairs "$work/$b.jsonl" --circuit "$work/$b.ig.json" \
            --sizes 1,2,5,10,20,50,100,200,500,1000 --errors "$e" --json > "$docs/$b.curve.$e.json"
    done
done
for e in nodes keep; do
    "$python" "$here/plot_curve.py" "$docs/faithfulness.$e.svg" \
        "pronoun=$docs/pronoun.curve.$e.json" "possessive=$docs/possessive.curve.$e.json"
done
