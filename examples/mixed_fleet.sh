#!/usr/bin/env bash
# Plan the Qwen3.5 family on a mixed fleet: 4x A100 80GB, 2x L40S and one Jetson AGX Thor.
# Needs only `pip install deploykit` (no GPU, no torch). Run: bash examples/mixed_fleet.sh
set -euo pipefail
FLEET="4xA100-80GB,2xL40S,1xthor"

# 1. Every checkpoint x bf16/fp8/int4 at 32k context: fits or why not, layout, GiB/GPU, concurrency, tok/s.
deploykit plan --gpus "$FLEET"

# 2. The MoE workhorse at 128k context with an fp8 KV cache, and where its memory goes.
deploykit plan --gpus "$FLEET" --model 35b-a3b --context 128k --kv-dtype fp8 --explain 35b-a3b

# 3. Machine-readable plan for scripts (shape documented in docs/planner.md).
out="$(mktemp -d)/plan.json"
deploykit plan --gpus "$FLEET" --format json -o "$out"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(e['fits'] for e in d['entries']), 'of', len(d['entries']), 'entries fit')" "$out"
