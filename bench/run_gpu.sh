#!/usr/bin/env bash
# One command for the kernel benchmarks on a GPU machine, each stage with its baseline in the SAME call, so
# every comparison is a ratio from one run (shared/reference/h100-baseline.md asks for that):
#   bash bench/run_gpu.sh gdn     # bench_gdn.py + fla 0.6.0 baseline          (~5-8 min on an H100)
#   bash bench/run_gpu.sh moe     # bench_moe.py + transformers MoE baseline    (~5-8 min)
#   bash bench/run_gpu.sh all     # both (may exceed a 10-minute per-call limit: prefer two calls)
# Results: $OUT (or out/bench) as JSON lines, then bench/kernel_ratios.py prints ratios and targets.
#
# What must travel with the repo (the GPU machine has no network and no ../shared):
#   * bench/baselines/{fla,moe}_baseline.py: copies of shared/bench/*, already in the repo.
#   * fla wheels for the GDN baseline, ~1.5 MB, put in .whl/ (git-ignored) on the dev machine with
#       pip download fla-core==0.6.0 flash-linear-attention==0.6.0 --no-deps -d .whl
#     and carried (device tool: carry=[".whl"]). Without them the fla lines report an import error.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
OUT_DIR=${OUT:-out}/bench
mkdir -p "$OUT_DIR"
export TRITON_DEFAULT_FP_FUSION=1 PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
if ls .whl/*.whl >/dev/null 2>&1; then
  pip install -q --no-deps --no-index .whl/*.whl || echo "note: could not install the carried wheels"
fi
# plugins/ is importable as deploykit.plugins only once installed; bench/_kernel_bench.py maps it otherwise.
pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "note: editable install skipped"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT_DIR/device.txt"
date -u +%Y-%m-%dT%H:%MZ | tee -a "$OUT_DIR/device.txt"
if [[ $STAGE == gdn || $STAGE == all ]]; then
  python bench/bench_gdn.py ${QUICK:+--quick} | tee "$OUT_DIR/gdn.jsonl"
  python bench/baselines/fla_baseline.py | tee "$OUT_DIR/fla.jsonl"
fi
if [[ $STAGE == moe || $STAGE == all ]]; then
  python bench/bench_moe.py ${QUICK:+--quick} | tee "$OUT_DIR/moe.jsonl"
  python bench/baselines/moe_baseline.py | tee "$OUT_DIR/moe_baseline.jsonl"
fi
python bench/kernel_ratios.py "$OUT_DIR" | tee "$OUT_DIR/ratios.txt"
