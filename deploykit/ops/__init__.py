"""deploykit's custom ops: contract, naive references, fast CPU forms and the torch custom ops.

Importing this package does not import torch (the planner runs without it); import the submodules.

- `contract`            the op contract (names, inputs, outputs, dtypes, attributes, shape rule). Torch-free.
- `gated_delta_rule`    `naive_gated_delta_rule` (token-by-token reference) and `chunk_gated_delta_rule`
                        (chunked WY form, 64-token chunks), signature
                        `(q, k, v, g, beta, initial_state, scale, use_qk_l2norm=1) -> (output, final_state)`.
- `causal_conv1d`       `naive_causal_conv1d` (explicit taps) and `causal_conv1d` (one grouped conv), signature
                        `(x, conv_state, weight, activation="silu") -> (output, new_conv_state)`.
- `moe`                 `naive_moe` (per-token loop) and `grouped_moe` (per-expert batches), signature
                        `(hidden, router_logits, gate_up, down, top_k, norm_topk_prob=1) -> output`.
- `registry`            which backend runs inside each op; `DEPLOYKIT_FORCE_NAIVE=1` forces the naive ones;
                        kernels from plugins/ add themselves with `registry.register(op, name, fn, priority)`.
- `torch_ops`           registers `torch.ops.deploykit.{gated_delta_rule, causal_conv1d, moe}`: the contract's
                        inputs in order, then every attribute in contract order (plugin_version included).

The names `naive_gated_delta_rule`, `chunk_gated_delta_rule`, `naive_causal_conv1d` and `naive_moe` are
stable: the Triton kernels and TensorRT plugins test against them.
"""
