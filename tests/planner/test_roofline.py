"""Roofline against h100-baseline.md measurements and hand-derived formulas."""

import pytest

from deploykit.planner.anatomy import anatomy
from deploykit.planner.models import resolve_model
from deploykit.planner.plan import make_plan
from deploykit.planner.roofline import expected_experts


@pytest.mark.parametrize(
    "experts, top_k, tokens, measured",
    # h100-baseline.md, MoE block table: distinct experts a batch touched on the GPU.
    [(256, 8, 1, 8), (256, 8, 8, 60), (256, 8, 64, 220), (256, 8, 512, 256), (512, 10, 1, 10), (512, 10, 8, 73),
     (512, 10, 64, 370)],
)
def test_expected_distinct_experts_match_measured(experts, top_k, tokens, measured):
    assert expected_experts(experts, top_k, tokens) == pytest.approx(measured, rel=0.05)


def _one(gpus, model, precision, **kw):
    (e,) = make_plan(gpus, models=[model], precision=precision, **kw).entries
    return e


def test_batch1_decode_of_9b_on_h100_matches_the_bandwidth_roofline():
    # h100-baseline.md: 17.91 GB of bf16 text weights / 3.02 TB/s measured copy bandwidth -> about 169 tok/s.
    # The planner does not read the embedding table (only one row per token): 17.91 - 2 x 248320 x 4096 bytes.
    e = _one("1xH100", "9b", "bf16", context=1, text_only=True, mtp=False)
    state_rw = 2 * (50_331_648 + 1_179_648)  # qwen35.md: 9B GDN recurrent + conv state, read and written
    kv = 32_768  # one token of context
    hand = 3.35e12 * 0.90 / (17.907606528e9 - 2 * 248320 * 4096 + state_rw + kv)
    assert e.throughput.decode_tok_s_b1 == pytest.approx(hand, rel=0.001)
    # The baseline's 169 tok/s also counts the 2.03 GB embedding table, hence +12 %.
    assert e.throughput.decode_tok_s_b1 == pytest.approx(169 * 17.91 / (17.91 - 2.034), rel=0.02)


def test_prefill_of_9b_on_h100_is_compute_bound_by_hand_formula():
    # FLOPs per prompt token = 2 x (text params - embedding) + attention over half the context on 8 full layers
    # + GDN update; rate = the measured 791 TFLOP/s BF16 GEMM of gpus.yaml (h100-baseline.md: 776-791).
    ctx = 4096
    a = anatomy(resolve_model("9b"))
    flops = 2 * (a.params_text - 248320 * 4096) + 4 * 16 * 256 * (ctx / 2) * 8 + 6 * 32 * 128 * 128 * 24
    e = _one("1xH100", "9b", "bf16", context=ctx, text_only=True, mtp=False)
    assert e.throughput.prefill_tok_s == pytest.approx(791e12 / flops, rel=0.001)
    assert e.throughput.prefill_tok_s == pytest.approx(43000, rel=0.15)  # h100-baseline.md compute roofline


def test_moe_batch1_decode_reads_only_the_active_experts():
    a = anatomy(resolve_model("35b-a3b"))
    bytes_read = 2 * (a.params_active - 248320 * 2048)  # active text params minus the embedding rows, bf16
    bytes_read += 2 * (62_914_560 + 1_474_560) + 20_480  # qwen35.md: state read + written, one token of KV
    e = _one("1xH200", "35b-a3b", "bf16", context=1, text_only=True, mtp=False)
    assert e.throughput.decode_tok_s_b1 == pytest.approx(4.8e12 * 0.90 / bytes_read, rel=0.001)


def test_larger_batches_raise_aggregate_decode_and_ttft_grows_with_context():
    short = _one("1xH100", "27b", "fp8", context="8k")
    long = _one("1xH100", "27b", "fp8", context="64k")
    assert short.throughput.decode_tok_s_max > short.throughput.decode_tok_s_b1
    assert long.throughput.ttft_ms > short.throughput.ttft_ms
    assert long.throughput.decode_tok_s_b1 < short.throughput.decode_tok_s_b1  # more KV read per step


def test_tensor_parallel_pays_all_reduce_time():
    from deploykit.planner.inventory import resolve_gpu
    from deploykit.planner.layout import _evaluate
    from deploykit.planner.memory import Layout, Options

    a = anatomy(resolve_model("27b"))
    for gpu in ("h100", "l40s"):  # NVLink and PCIe
        g = resolve_gpu(gpu)[0]
        tp1 = _evaluate(a, g, 4, "int4", Options(context=4096), Layout(tp=1), 1).perf.decode_tok_s_b1
        tp4 = _evaluate(a, g, 4, "int4", Options(context=4096), Layout(tp=4), 1).perf.decode_tok_s_b1
        assert tp1 < tp4 < 4 * tp1  # faster, but not perfectly: 2 all-reduces per layer


def test_one_sequence_under_expert_parallelism_touches_top_k_experts():
    """Batch 1 on tp1 ep8: one token touches k = 8 experts in all, one per rank on average (not k per rank).
    Hand formula: bytes = non-expert active bytes + (k / ep) experts per MoE layer + state + KV; plus two
    all-to-alls per MoE layer (latency + k x hidden x 2 bytes x (ep-1)/ep over NVLink, 900/2 GB/s on H200)."""
    from deploykit.planner.inventory import resolve_gpu
    from deploykit.planner.layout import _evaluate
    from deploykit.planner.memory import Layout, Options

    a = anatomy(resolve_model("35b-a3b"))
    h200 = resolve_gpu("h200")[0]
    expert = 2 * 3 * 2048 * 512  # bf16 gate, up, down of one routed expert (qwen35.md: hidden 2048, moe 512)
    nonexp = 2 * (a.params_active - 248320 * 2048) - 40 * 8 * expert  # active minus embedding and the k experts
    nbytes = nonexp + 40 * (8 / 8) * expert + 2 * (62_914_560 + 1_474_560) + 20_480
    comm = 2 * 40 * (8e-6 + 8 * 2048 * 2 * (7 / 8) / 450e9)
    hand = 1 / (nbytes / (4.8e12 * 0.90) + comm)
    opts = Options(context=1, vision=False, mtp=False)
    kp = _evaluate(a, h200, 8, "bf16", opts, Layout(tp=1, ep=8), 1)
    assert kp.perf.decode_tok_s_b1 == pytest.approx(hand, rel=0.001)


def test_the_mtp_layer_is_held_but_not_read_by_decode():
    with_mtp = _one("1xH100", "0.8b", "bf16", context="256k")
    without = _one("1xH100", "0.8b", "bf16", context="256k", mtp=False)
    assert with_mtp.throughput.decode_tok_s_b1 == pytest.approx(without.throughput.decode_tok_s_b1, rel=1e-9)
    assert with_mtp.max_batch < without.max_batch  # its weights and KV cache still take memory
