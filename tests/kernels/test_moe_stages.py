"""MoE's stage launchers (one kernel each, contract STAGE_OPS) against their naive references in deploykit.ops.moe,
and their outputs against the contract's shape rule, under TRITON_INTERPRET=1."""

import pytest
import torch
from deploykit.plugins import launcher
from deploykit.plugins.aot import contract_descriptors

from deploykit.ops import moe as ref
from deploykit.ops.contract import STAGE_OPS

from ._util import BF16_ULP, FP16_ULP, rel_err
from .test_moe import make

ULP = {torch.float32: 1e-6, torch.float16: FP16_ULP, torch.bfloat16: BF16_ULP}


def _check_rule(name, inputs, attrs, outputs):
    """Launcher outputs have the shapes and dtypes the contract's rule gives for these inputs."""
    spec = STAGE_OPS[name]
    act = inputs[spec.activation_input].dtype
    shapes = spec.infer_shapes([tuple(t.shape) for t in inputs], attrs)
    dtypes = [getattr(torch, d) for d in spec.output_dtypes(str(act).removeprefix("torch."))]
    assert [(tuple(o.shape), o.dtype) for o in outputs] == list(zip(shapes, dtypes, strict=True)), name
    # what the QDP registrations return (plugins/moe/qdp.py), on concrete shapes
    descs = contract_descriptors(spec, [_Desc(t.shape) for t in inputs], act, torch.float32,
                                 lambda shape, dtype: (tuple(shape), dtype), attrs, torch.int32)
    assert list(descs) == list(zip(shapes, dtypes, strict=True)), name


class _Desc:
    def __init__(self, shape):
        self.shape_expr = tuple(shape)


def _run(name, inputs, attrs):
    """The op's launcher called as a plugin calls it: contract inputs, then attributes in contract order."""
    order = [a.name for a in STAGE_OPS[name].attributes if a.name != "plugin_version"]
    out = launcher(name)(*inputs, *(attrs[a] for a in order))
    out = out if isinstance(out, tuple) else (out,)
    _check_rule(name, inputs, attrs, out)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("N,E,k,block_m", [(1, 8, 2, 16), (9, 6, 3, 16), (40, 5, 2, 16), (30, 7, 4, 64)])
def test_grouped_stages_match_their_references(dtype, N, E, k, block_m):
    """Route and align exactly (ids, weights to fp32 rounding, the slot layout bit for bit); the two GEMMs on
    the real slots within rounding of the activation dtype; several blocks per expert when N*k > E*block_m."""
    H, I = 32, 16
    hidden, logits, gate_up, down = make(N, H, E, I, dtype, seed=N + E)
    a = {"top_k": k, "norm_topk_prob": 1, "block_m": block_m}
    ids, w = _run("MoERoute", [logits], a)
    rids, rw = ref.naive_moe_route(logits, k, 1)
    assert torch.equal(ids, rids) and rel_err(w, rw) <= 1e-6
    slots, blocks = _run("MoEAlign", [logits, ids], a)
    rslots, rblocks = ref.naive_moe_align(logits, ids, block_m)
    assert torch.equal(slots, rslots) and torch.equal(blocks, rblocks)
    inter = _run("MoEGateUp", [hidden, gate_up, slots, blocks], a)[0]
    rinter = ref.naive_moe_gate_up(hidden, gate_up, slots, blocks, k, block_m)
    real = (slots < N * k) & (blocks.repeat_interleave(block_m) < E)  # padding rows are unspecified
    assert rel_err(inter[real], rinter[real]) <= 2 * ULP[dtype]
    pair_out = _run("MoEDown", [rinter, down, slots, blocks, w], a)[0]
    rpair = ref.naive_moe_down(rinter, down, slots, blocks, w, block_m)
    assert rel_err(pair_out, rpair) <= (1e-5 if dtype == torch.float32 else 2 * ULP[dtype])
    # the stages end as the lowered graph does (ReduceSum over k, cast): the contract's MoE
    assert rel_err(rpair.sum(1).to(dtype), ref.naive_moe(hidden, logits, gate_up, down, k, 1)) <= 4 * ULP[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("N,E,k,norm", [(1, 8, 2, 1), (4, 10, 3, 0)])
def test_pair_stages_match_their_references(dtype, N, E, k, norm):
    H, I = 48, 24
    hidden, logits, gate_up, down = make(N, H, E, I, dtype, seed=3 * N + E)
    a = {"top_k": k, "norm_topk_prob": norm}
    inter, ids, w = _run("MoEPairGateUp", [hidden, logits, gate_up], a)
    rinter, rids, rw = ref.naive_moe_pair_gate_up(hidden, logits, gate_up, k, norm)
    assert torch.equal(ids, rids) and rel_err(w, rw) <= 1e-6
    assert rel_err(inter, rinter) <= 2 * ULP[dtype]
    out = _run("MoEPairDown", [rinter, down, rids, rw], {})[0]
    assert rel_err(out, ref.naive_moe_pair_down(rinter, down, rids, rw)) <= 2 * ULP[dtype]
    assert rel_err(out, ref.naive_moe(hidden, logits, gate_up, down, k, norm)) <= 4 * ULP[dtype]


def test_align_bound_is_tight_when_every_expert_gets_a_partial_block():
    """The contract's NB = cdiv(P, block_m) + min(E, P) is reached: E experts hit once each (a partial
    block each) need E blocks, and cdiv(P, block_m) more are allowed only as slack past the groups."""
    E, block_m = 5, 16
    ids = torch.arange(E, dtype=torch.int32).reshape(E, 1)
    slots, blocks = ref.naive_moe_align(torch.zeros(E, E), ids, block_m)
    assert blocks.tolist() == [0, 1, 2, 3, 4, E]  # cdiv(5, 16) + min(5, 5) = 6 blocks, the last unused
    assert slots.numel() == 6 * block_m and (slots[5 * block_m:] == E).all()  # padding sentinel P = 5


@pytest.mark.parametrize("N,E,k,block_m", [(300, 256, 8, 16), (70, 512, 10, 64)])
def test_align_matches_its_reference_at_qwen35_expert_counts(N, E, k, block_m):
    """35B-A3B's 256 experts and 397B-A17B's 512, with a hot expert: several BP runs of pairs and of blocks
    (NB up to 406), groups of one partial block, of many blocks and empty ones, bit for bit."""
    gen = torch.Generator().manual_seed(E)
    logits = torch.randn(N, E, generator=gen)
    logits[: N // 2, 7] += 30.0  # half the tokens pick expert 7 first: a group of many blocks
    ids = ref.naive_moe_route(logits, k, 1)[0]
    slots, blocks = _run("MoEAlign", [logits, ids], {"block_m": block_m})
    rslots, rblocks = ref.naive_moe_align(logits, ids, block_m)
    assert torch.equal(slots, rslots) and torch.equal(blocks, rblocks)
    assert (blocks == 7).sum() >= N // 2 // block_m and (blocks == E).any()


@pytest.mark.parametrize("name", sorted(STAGE_OPS))
def test_stage_kernel_arguments_are_in_the_qdp_order(name):
    """A QDP AOT plugin launches its kernel with the op's input pointers, then its int scalars, then its output
    pointers: each stage kernel's runtime parameters (in the kernel's own order, which the PTX keeps) must be
    exactly that, with the pointer types of the contract's dtypes."""
    from deploykit.plugins.gated_delta_net.launch import gdn_stage_aot_spec
    from deploykit.plugins.moe.launch import moe_stage_aot_spec

    op = STAGE_OPS[name]
    if op.stage_of == "MoE":
        spec = moe_stage_aot_spec(name, "bfloat16", 64, 32, 8, 2, block_m=16)
    else:
        spec = gdn_stage_aot_spec(name, "bfloat16", 2, 4, 16, 32, 0.25, 1)
    runtime = [a for a in spec.kernel.arg_names if a not in spec.constexprs]
    assert list(spec.args) == runtime  # KernelSpec lists them in kernel order
    ptr = {"T": "*bf16", "float32": "*fp32", "int32": "*i32"}
    types = list(spec.args.values())
    n_in, n_out = len(op.inputs), len(op.outputs)
    assert types[:n_in] == [ptr[t.dtype] for t in op.inputs]
    assert types[len(types) - n_out:] == [ptr[t.dtype] for t in op.outputs]
    assert set(types[n_in:len(types) - n_out]) <= {"i32"}  # the runtime scalars between them


def _bad_stage_inputs():
    """One wrong input per case, with the message the launcher must give before any kernel runs. Every
    expectation is derived by hand from the contract's dims: N=3 tokens, H=32, E=4 experts, I=16, k=2,
    block_m=16, so MoEAlign's bound is NB = cdiv(6, 16) + min(4, 6) = 5 blocks, S = 80 slots."""
    N, H, E, I, k, bm = 3, 32, 4, 16, 2, 16  # noqa: E741 (contract symbol I)
    hidden, logits, gate_up, down = make(N, H, E, I, torch.float32, seed=5)
    ids, w = torch.zeros(N, k, dtype=torch.int32), torch.full((N, k), 0.5)
    slots, blocks = torch.full((5 * bm,), N * k, dtype=torch.int32), torch.full((5,), E, dtype=torch.int32)
    a = {"top_k": k, "norm_topk_prob": 1, "block_m": bm}
    cases = [
        ("MoERoute", [logits], {**a, "top_k": E + 1}, "needs 1 <= top_k <= E, got top_k=5, E=4"),
        ("MoEAlign", [logits, ids[:-1]], a, "input 'topk_ids' has N=2, but an earlier input has N=3"),
        ("MoEGateUp", [hidden, gate_up, slots, blocks], {**a, "block_m": 8}, "16 <= block_m, got block_m=8"),
        ("MoEGateUp", [hidden, gate_up, slots, blocks], {**a, "block_m": 24}, "needs block_m % 16 == 0, got"),
        ("MoEGateUp", [hidden, gate_up[:, :, :-1], slots, blocks], a, "input 'gate_up' has H=31"),
        ("MoEGateUp", [hidden, gate_up, slots[:-1], blocks], a, r"S == NB \* block_m, got S=79, NB=5,"),
        ("MoEGateUp", [hidden, gate_up[:, :-1], slots, blocks], a, "needs I2 % 2 == 0, got I2=31"),
        ("MoEDown", [torch.zeros(80, I), down[:, :, :-1], slots, blocks, w], a, "input 'down' has I=15"),
        ("MoEDown", [torch.zeros(80, I), down, slots, blocks[:-1], w], a, "got S=80, NB=4, block_m=16"),
        ("MoEPairGateUp", [hidden, logits[:-1], gate_up], a, "input 'router_logits' has N=2"),
        ("MoEPairGateUp", [hidden, logits, gate_up], {**a, "top_k": 0}, "1 <= top_k <= E, got top_k=0, E=4"),
        ("MoEPairDown", [torch.zeros(N, k, I), down, ids, w[:, :-1]], {}, "input 'topk_weights' has K=1"),
        # dtypes other than the contract's (its TensorRT plugin refuses them): int64 is what torch.topk returns
        ("MoEAlign", [logits, ids.long()], a, "input 'topk_ids' must be int32, got int64"),
        ("MoEGateUp", [hidden, gate_up.bfloat16(), slots, blocks], a,
         "input 'gate_up' must be float32, as 'hidden', got bfloat16"),
        ("MoEDown", [torch.zeros(80, I), down, slots.long(), blocks, w], a, "input 'slot_pair' must be int32"),
        ("MoEPairDown", [torch.zeros(N, k, I), down, ids, w.half()], {}, "'topk_weights' must be float32, got float16"),
        ("MoERoute", [logits.to(torch.float64)], a, "'router_logits' must be one of float32, float16, bfloat16"),
    ]
    return [pytest.param(*c, id=f"{c[0]}-{i}") for i, c in enumerate(cases)]


@pytest.mark.parametrize("name,inputs,attrs,message", _bad_stage_inputs())
def test_stage_launchers_refuse_inconsistent_inputs(name, inputs, attrs, message):
    """A kernel launched with dims that disagree would read past a buffer's end (on a GPU: garbage or an
    illegal address, no error), so each launcher checks them first, as the GDN stage launchers do. A dtype
    outside the contract, which the TensorRT plugin refuses, failed inside Triton (int64 ids in MoEAlign's
    histogram) or ran on what no engine accepts (fp16 routing weights); now it is refused by name."""
    order = [a.name for a in STAGE_OPS[name].attributes if a.name != "plugin_version"]
    with pytest.raises(ValueError, match=f"^{name}: .*{message}"):
        launcher(name)(*inputs, *(attrs[a] for a in order))
