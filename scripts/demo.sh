#!/usr/bin/env bash
# The demo, end to end (the README's main command runs it after setting up):
#   1. record short real CPU runs of ResNet-20 SimCLR on Fashion-MNIST for six sparsity schemes
#      (dense, CDG and SCDG with the same G, SyncCP element-wise and 4x4 blocks at the same
#      per-layer sparsity, 2:4 in both branches), each trace with its accuracy; two runs train at
#      once, one thread each, so both cores work; dense once more with seed 1, so the report
#      can quote a measured seed-to-seed spread;
#   2. replay every trace on two designs ('accelsim compare'): the FP8 preset narrowed to 4 PE
#      columns (16x4 PEs x 8 lanes = 512 MACs/cycle, which ResNet-20's 16-64 channels fill: about
#      79 % dense utilisation against 27 % on the 16x16 preset) and the 32x32 systolic preset;
#   3. sweep PE columns, vector width and DRAM bandwidth on the FP8 preset;
#   4. write the full report under reports/demo/ (report.md, report.html, figures/).
# Re-running reuses every finished piece (finished runs, replays and sweep points).
# DEMO_STEPS sets the training steps per run (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${ACCELSIM_VENV:-.venv}/bin"
OUT="${DEMO_OUT:-reports/demo}"
STEPS="${DEMO_STEPS:-100}"
RUNS="$OUT/runs"
# Pairs that train at once, each pair about as long as the other runs' pairs.
PAIRS=("cdg scdg" "dense synccp-element" "synccp-nm-2-4 synccp-block-4x4")
SCHEMES="dense cdg scdg synccp-element synccp-nm-2-4 synccp-block-4x4"
FP8_NARROW=(--set pe_array.cols=4 --set name=fp8-edge-16x4-cols)
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

# One line per run: its last logged step (log.csv), every 30 s while a pair trains.
progress() {
    local line="" scheme last
    for scheme in "$@"; do
        last=$(tail -n 1 "$RUNS/$scheme/log.csv" 2>/dev/null | cut -d, -f1 || true)
        [[ "$last" =~ ^[0-9]+$ ]] && last="step $(( last + 1 ))/$STEPS" || last="starting"
        [ -f "$RUNS/$scheme/eval.json" ] && last="done"
        line="$line  $scheme: $last"
    done
    echo "   [$(elapsed)]$line"
}

OLDER="(output of an older demo or other settings? remove $OUT or set DEMO_OUT=another/dir)"
# train SCHEME [RUN_NAME THREADS EXTRA_OPTION...]
train() {
    local scheme="$1" name="${2:-$1}" threads="${3:-1}"
    shift $(( $# < 3 ? $# : 3 ))
    OMP_NUM_THREADS="$threads" "$BIN/accelsim" record \
        --config "workloads/recipes/cpu-resnet20-fmnist-$scheme.yaml" --steps "$STEPS" \
        --out "$RUNS/$name" --quiet "$@" > "$RUNS/$name.log" 2>&1 \
        || { echo "training $name failed:" >&2; tail -n 5 "$RUNS/$name.log" >&2
             echo "$OLDER" >&2; return 1; }
}
# A failure or Ctrl-C stops the runs still in the background too.
# (each background job is a subshell: stop its accelsim child, then it)
trap 'for p in $(jobs -p); do pkill -TERM -P "$p"; kill "$p"; done 2>/dev/null || true' EXIT

mkdir -p "$RUNS"
for pair in "${PAIRS[@]}"; do
    read -r -a schemes <<< "$pair"
    echo "== training ${schemes[*]} ($STEPS steps each, two at once)"
    pids=()
    for scheme in "${schemes[@]}"; do train "$scheme" & pids+=($!); done
    waited=0
    while [ -n "$(jobs -rp)" ]; do  # while either still runs
        sleep 2
        waited=$(( waited + 2 ))
        if (( waited % 30 == 0 )); then progress "${schemes[@]}"; fi
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    for scheme in "${schemes[@]}"; do echo "   $scheme: $(grep -m1 'k-NN' "$RUNS/$scheme.log")"; done
done
# A second dense seed measures the seed-to-seed spread the report's accuracy caveat quotes.
echo "== [$(elapsed)] training dense again with seed 1 (the seed-to-seed spread)"
train dense dense-seed1 2 --seed 1
echo "   dense-seed1: $(grep -m1 'k-NN' "$RUNS/dense-seed1.log")"

traces=()
for scheme in $SCHEMES; do traces+=("$RUNS/$scheme"); done
replayed=("${traces[@]}" "$RUNS/dense-seed1")
echo "== [$(elapsed)] replaying every trace on both designs"
"$BIN/accelsim" compare "${replayed[@]}" --hw hw_configs/fp8_tensor_edge_28nm.yaml \
    "${FP8_NARROW[@]}" --out "$OUT/compare-fp8-edge-16x4" &
fp8=$!
"$BIN/accelsim" compare "${replayed[@]}" --hw hw_configs/systolic_32x32_45nm.yaml \
    --out "$OUT/compare-systolic-32x32"
wait "$fp8"

echo "== [$(elapsed)] sweeping PE columns, vector width and DRAM bandwidth (FP8 preset)"
"$BIN/accelsim" sweep "${traces[@]}" --hw hw_configs/fp8_tensor_edge_28nm.yaml \
    --vary pe_array.cols=4,16 --vary pe_array.vector_width=4,8 \
    --vary dram.bandwidth_gbps=6.4,25.6 --out "$OUT/sweep" --resume \
    || { echo "$OLDER" >&2; exit 1; }

echo "== [$(elapsed)] writing the report"
"$BIN/accelsim" report "$OUT/compare-fp8-edge-16x4/runs"/* \
    "$OUT/compare-systolic-32x32/runs"/* "$OUT/sweep" --out "$OUT"
echo "demo finished in $(elapsed)"
echo "report: $OUT/report.md (and $OUT/report.html)"
