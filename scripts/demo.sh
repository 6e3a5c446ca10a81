#!/usr/bin/env bash
# The demo, end to end (the README's main command runs it after setting up):
#   1. record short real CPU runs of ResNet-20 SimCLR on Fashion-MNIST for six sparsity schemes
#      (dense, CDG, SCDG, SyncCP element-wise, 2:4, 4x4 blocks), each trace with its accuracy;
#   2. replay every trace on both hardware presets ('accelsim compare');
#   3. sweep PE-array size, vector width and DRAM bandwidth on the FP8 preset;
#   4. write the full report under reports/demo/ (report.md, report.html, figures/).
# Re-running reuses every finished piece (finished runs, replays and sweep points).
# DEMO_STEPS sets the training steps per run (default 200: about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${ACCELSIM_VENV:-.venv}/bin"
OUT="${DEMO_OUT:-reports/demo}"
STEPS="${DEMO_STEPS:-200}"
RUNS="$OUT/runs"
SCHEMES="dense cdg scdg synccp-element synccp-nm-2-4 synccp-block-4x4"
start=$(date +%s)

for scheme in $SCHEMES; do
    echo "== training $scheme ($STEPS steps)"
    "$BIN/accelsim" record --config "workloads/recipes/cpu-resnet20-fmnist-$scheme.yaml" \
        --steps "$STEPS" --out "$RUNS/$scheme" --quiet
done

traces=()
for scheme in $SCHEMES; do traces+=("$RUNS/$scheme"); done
for hw in fp8_tensor_edge_28nm systolic_32x32_45nm; do
    echo "== replaying every trace on $hw"
    "$BIN/accelsim" compare "${traces[@]}" --hw "hw_configs/$hw.yaml" --out "$OUT/compare-$hw"
done

echo "== sweeping PE-array size, vector width and DRAM bandwidth (FP8 preset)"
"$BIN/accelsim" sweep "${traces[@]}" --hw hw_configs/fp8_tensor_edge_28nm.yaml \
    --vary pe_array.rows=8,16,32 --vary pe_array.vector_width=4,8 \
    --vary dram.bandwidth_gbps=6.4,25.6 --out "$OUT/sweep" --resume --no-progress

echo "== writing the report"
"$BIN/accelsim" report "$OUT/compare-fp8_tensor_edge_28nm/runs"/* \
    "$OUT/compare-systolic_32x32_45nm/runs"/* "$OUT/sweep" --out "$OUT"
echo "demo finished in $(( $(date +%s) - start )) s"
echo "report: $OUT/report.md (and $OUT/report.html)"
