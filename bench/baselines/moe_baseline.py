# Copied unchanged from shared/bench/moe_baseline.py (../shared does not travel to the GPU machine; bench/run_gpu.sh runs it).
"""MoE block anchors on a GPU: transformers' Qwen3_5MoeSparseMoeBlock (router + routed experts + shared expert) at the
real Qwen3.5 MoE dims, with each experts implementation transformers offers. Throughput timing (50 calls back to back).
Reports bytes of the weights the batch actually touches (distinct experts + shared expert + router) per second."""
import json, sys, torch
from transformers import Qwen3_5MoeTextConfig
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeSparseMoeBlock

DIMS = {"35b-a3b": (2048, 256, 8, 512, 512), "122b-a10b": (3072, 256, 8, 1024, 1024), "397b-a17b": (4096, 512, 10, 1024, 1024)}
dev = "cuda"

def run(name, impl, tokens):
    H, E, k, I, S = DIMS[name]
    cfg = Qwen3_5MoeTextConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k, moe_intermediate_size=I,
                               shared_expert_intermediate_size=S)
    cfg._experts_implementation = impl
    torch.manual_seed(0)
    with torch.device(dev):
        blk = Qwen3_5MoeSparseMoeBlock(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for p in blk.parameters(): p.normal_(0, 0.02)
    x = torch.randn(1, tokens, H, device=dev, dtype=torch.bfloat16)
    with torch.no_grad():
        _, _, idx = blk.gate(x.view(-1, H))
        distinct = int(idx.unique().numel())
        f = lambda: blk(x)
        for _ in range(5): f()
        torch.cuda.synchronize(); a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record()
        for _ in range(50): f()
        b.record(); torch.cuda.synchronize()
    ms = a.elapsed_time(b) / 50
    bytes_ = 2 * (distinct * 3 * I * H + 3 * S * H + E * H + H)
    return {"model": name, "impl": impl, "tokens": tokens, "distinct_experts": distinct, "ms": round(ms, 4),
            "touched_MB": round(bytes_ / 1e6, 1), "GBps": round(bytes_ / (ms / 1e3) / 1e9)}

if __name__ == "__main__":
    for name in DIMS:
        for impl in ("eager", "batched_mm", "grouped_mm"):
            for tokens in (1, 8, 64, 512):
                try:
                    print(json.dumps(run(name, impl, tokens)), flush=True)
                except Exception as e:
                    print(json.dumps({"model": name, "impl": impl, "tokens": tokens, "error": repr(e)[:150]}), flush=True)
                torch.cuda.empty_cache()
