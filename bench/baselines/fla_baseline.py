# Copied unchanged from shared/bench/fla_baseline.py (../shared does not travel to the GPU machine; bench/run_gpu.sh runs it).
"""fla 0.6.0 Gated DeltaNet kernels at the real Qwen3.5 head layouts (16 key heads, HV value heads, K=V=128).
Each case runs in its own process (a faulting kernel poisons the CUDA context). Two timings per case:
'latency' = events around one call with a sync after each; 'throughput' = n calls back to back / n."""
import json, subprocess, sys, torch

def case(kind, H, HV, n_or_b):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    dev, K, V = "cuda", 128, 128
    nrm = lambda *s: torch.nn.functional.normalize(torch.randn(*s, device=dev, dtype=torch.bfloat16), dim=-1)
    if kind == "chunk":
        T = n_or_b; B = 1
        q, k = nrm(1, T, H, K), nrm(1, T, H, K)
        v = torch.randn(1, T, HV, V, device=dev, dtype=torch.bfloat16)
        g = -torch.rand(1, T, HV, device=dev) * 0.1; beta = torch.rand(1, T, HV, device=dev, dtype=torch.bfloat16)
        fn = lambda: chunk_gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    else:
        B = n_or_b
        q, k = nrm(B, 1, H, K), nrm(B, 1, H, K)
        v = torch.randn(B, 1, HV, V, device=dev, dtype=torch.bfloat16)
        g = -torch.rand(B, 1, HV, device=dev) * 0.1; beta = torch.rand(B, 1, HV, device=dev, dtype=torch.bfloat16)
        st = torch.randn(B, HV, K, V, device=dev, dtype=torch.float32)
        fn = lambda: fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=st, output_final_state=True)
    for _ in range(5): fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True); lat = []
    for _ in range(30):
        a.record(); fn(); b.record(); torch.cuda.synchronize(); lat.append(a.elapsed_time(b))
    lat.sort()
    a.record()
    for _ in range(50): fn()
    b.record(); torch.cuda.synchronize(); thr = a.elapsed_time(b) / 50
    r = {"kernel": kind, "H": H, "HV": HV, ("T" if kind == "chunk" else "B"): n_or_b,
         "latency_ms_median": round(lat[15], 4), "throughput_ms": round(thr, 4)}
    if kind != "chunk": r["state_GBps_at_throughput"] = round(2 * B * HV * K * V * 4 / (thr / 1e3) / 1e9)
    print(json.dumps(r), flush=True)

if __name__ == "__main__":
    if len(sys.argv) > 1:
        case(sys.argv[1], *map(int, sys.argv[2:])); sys.exit(0)
    cases = [("chunk", 16, hv, t) for hv in (32, 48, 64) for t in (2048, 8192)] + \
            [("chunk", 32, 32, 8192)] + \
            [("recurrent", h, hv, b) for (h, hv) in ((32, 32), (16, 32), (48, 48), (16, 48), (64, 64), (16, 64)) for b in (1, 64)]
    for c in cases:
        p = subprocess.run([sys.executable, __file__, *map(str, c)], capture_output=True, text=True, timeout=120)
        line = [l for l in p.stdout.splitlines() if l.startswith("{")]
        print(line[-1] if line else json.dumps({"case": c, "error": (p.stderr.strip().splitlines() or ["?"])[-1][:120]}), flush=True)
