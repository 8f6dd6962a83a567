#!/usr/bin/env bash
# The kernel benchmarks on a GPU machine. Each stage runs its baseline in the SAME call, so every comparison
# is a ratio from one run (shared/reference/h100-baseline.md asks for that). From the repo root:
#   bash bench/run_gpu.sh decode    # GDN decode sweep + fla fused_recurrent cases          (~3-4 min, H100)
#   bash bench/run_gpu.sh prefill   # GDN chunked prefill sweep + conv + fla chunk cases    (~5-7 min)
#   bash bench/run_gpu.sh moe       # MoE tile sweep + 3 models x 4 batch sizes + transformers baseline (~6-8 min)
#   bash bench/run_gpu.sh all       # everything (longer than a 10-minute per-call limit: use the stages)
#   bash bench/run_gpu.sh quick     # THE ONE-CALL CHECK (device budget: 15 minutes a task): every issue-5
#                                   # target case and its baseline, then the AOT kernels (bench_aot.py), each
#                                   # step under its own timeout (590 s in all), most decisive first, so a
#                                   # cut-off run still brings back rows. It writes 8 files, the most the
#                                   # device tool brings back from $OUT.
# QUICK=1 skips the sweeps. Output: $OUT/bench (or out/bench) as JSON lines; kernel_ratios.py prints the
# ratios and the issue-5 targets over whatever files exist.
# The estimated times above are guesses; nothing here has run on a GPU yet. The harness itself runs on the
# CPU in CI (tests/kernels/test_bench_harness.py: --smoke, tiny shapes, Triton interpreter).
#
# What must travel with the repo (the GPU machine has no network and no ../shared):
#   * bench/baselines/{fla,moe}_baseline.py: copies of shared/bench/*, already in the repo.
#   * the wheels of bench/wheels.txt, ~4 MB: the fla baselines, and pydantic for the op contract (the image
#     has none; without it nothing of ours imports). Put them in .whl/ (git-ignored) on the dev machine with
#       bash bench/fetch_wheels.sh
#     and carry them (device tool: carry=[".whl"]). A preflight import stops the call within seconds, exit 2,
#     where they are missing. CI runs the smoke call with only the image's packages and those wheels
#     importable (bench/gpu_image/), so a new dependency fails there first.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
OUT_DIR=${OUT:-out}/bench
mkdir -p "$OUT_DIR"
export TRITON_DEFAULT_FP_FUSION=1 PYTHONUNBUFFERED=1
# SMOKE=1: the same steps on the CPU (tiny shapes, Triton interpreter, GPU-only baselines skipped), which is
# how CI checks this script (tests/kernels/test_bench_harness.py) before a GPU call depends on it.
if [ -n "${SMOKE:-}" ]; then export BENCH_DEVICE=cpu TRITON_INTERPRET=1; S=--smoke; else unset TRITON_INTERPRET; S=; fi
if ls .whl/*.whl >/dev/null 2>&1; then  # the device tool's way: a private target dir, nothing else touched
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "note: could not install the carried wheels"
fi
# deploykit is not installed there: bench/_kernel_bench.py puts the checkout on sys.path and maps plugins/
# itself. Preflight: everything our steps import, before any device time goes into compiling.
if ! err=$(cd bench && python3 -c "import bench_aot, precompile, kernel_ratios" 2>&1); then
  echo "error: the benchmarks cannot import on this machine: $(tail -n 1 <<<"$err")." \
    "Fix: run 'bash bench/fetch_wheels.sh' on the dev machine and carry .whl (carry=[\".whl\"])." >&2
  exit 2
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } \
  | tee -a "$OUT_DIR/device.txt"
date -u +%Y-%m-%dT%H:%MZ | tee -a "$OUT_DIR/device.txt"
Q=${QUICK:+--quick}

fla_cases() {  # kind, then "H HV N" triples; each case in its own process as fla_baseline.py does
  local kind=$1; shift
  for c in "$@"; do python3 bench/baselines/fla_baseline.py "$kind" $c; done
}
if [ "$STAGE" = quick ]; then  # step timeouts: 90 + 60 + 45 + 120 + 120 + 60 + 50 + 45 = 590 s
  step() {  # seconds, output file, command...: a step cut off or failed is noted, the next one still runs;
    # rows are appended (both fla steps write fla.jsonl: the device tool brings back 8 files at most)
    local secs=$1 file=$2; shift 2
    timeout "$secs" "$@" | tee -a "$OUT_DIR/$file" || echo "note: $file cut at ${secs}s or failed"
  }
  baseline() { if [ -n "$S" ]; then echo "note: $2 skipped (smoke run: GPU-only baseline)"; else step "$@"; fi; }
  # all the specialisations below, compiled in parallel first (prints only: the 8 files are spoken for)
  timeout 90 python3 bench/precompile.py $S || echo "note: precompile cut at 90s or failed; steps compile the rest"
  step 60 gdn_decode.jsonl python3 bench/bench_gdn.py --quick --only decode $S
  baseline 45 fla.jsonl bash -c 'for c in "16 32 64" "16 32 1"; do python3 bench/baselines/fla_baseline.py recurrent $c; done'
  step 120 moe.jsonl python3 bench/bench_moe.py --quick $S
  step 120 gdn_prefill.jsonl python3 bench/bench_gdn.py --quick --only prefill $S
  baseline 60 fla.jsonl bash -c 'for c in "16 32 8192" "32 32 8192"; do python3 bench/baselines/fla_baseline.py chunk $c; done'
  baseline 50 moe_baseline.jsonl python3 bench/baselines/moe_baseline.py
  # the AOT specialisations (what engines embed) run and checked against the JIT launchers; last, as the
  # least decisive: if the call's own limit cuts it, kernel_ratios.py can be run on the files back home
  step 45 aot.jsonl python3 bench/bench_aot.py $S
  python3 bench/kernel_ratios.py "$OUT_DIR" | tee "$OUT_DIR/ratios.txt"
  exit 0
fi
case $STAGE in decode|all)
  python3 bench/bench_gdn.py $Q --only decode | tee "$OUT_DIR/gdn_decode.jsonl"
  fla_cases recurrent "16 32 64" "32 32 64" "16 48 64" "16 64 64" "16 32 1" "32 32 1" "16 48 1" "16 64 1" \
    | tee "$OUT_DIR/fla_recurrent.jsonl" ;;
esac
case $STAGE in prefill|all)
  python3 bench/bench_gdn.py $Q --only prefill | tee "$OUT_DIR/gdn_prefill.jsonl"
  python3 bench/bench_gdn.py --only conv | tee "$OUT_DIR/gdn_conv.jsonl"
  fla_cases chunk "16 32 8192" "32 32 8192" "16 32 2048" "16 48 8192" "16 64 8192" | tee "$OUT_DIR/fla_chunk.jsonl" ;;
esac
case $STAGE in moe|all)
  python3 bench/bench_moe.py $Q | tee "$OUT_DIR/moe.jsonl"
  python3 bench/baselines/moe_baseline.py | tee "$OUT_DIR/moe_baseline.jsonl" ;;
esac
python3 bench/kernel_ratios.py "$OUT_DIR" | tee "$OUT_DIR/ratios.txt"
