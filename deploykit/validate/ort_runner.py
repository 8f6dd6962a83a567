"""The exported ONNX model on ONNX Runtime, with its states fed back from one step to the next.

Graph optimisation is ORT_ENABLE_BASIC: extended/layout fusions (e.g. com.microsoft MatMulNBits for Q/DQ,
fused attention/GELU/LayerNorm kernels) change the arithmetic, and the point here is to compare the
graph's own math with the reference (export-design.md section 5: ORT_ENABLE_ALL drifted by 0.1 on Q/DQ).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_NP = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}


def make_session(model_path: Path, providers: list[str] | None = None, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    # every local execution provider (CUDA, TensorRT, ... when installed); Azure's is a remote stub
    available = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
    providers = [p for p in (providers or available) if p in available] or ["CPUExecutionProvider"]
    if not Path(model_path).is_file():
        from deploykit.errors import DeployKitError

        raise DeployKitError(f"the export lists {Path(model_path).name}, which is missing from {Path(model_path).parent}",
                             "re-export with `deploykit export`")
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own pybind exception types
        if "NOT_IMPLEMENTED" not in str(exc):
            raise
        from deploykit.errors import DeployKitError

        first = str(exc).split(" : ")[-1].strip()
        raise DeployKitError(
            f"ONNX Runtime ({', '.join(providers)}) cannot run this model: {first}",
            "bf16 exports need an execution provider with bf16 kernels (e.g. CUDA); "
            "validate an fp32 or fp16 export on the CPU",
        ) from None


class OrtModel:
    """step(input_ids) runs one chunk (T >= 1 tokens) for a batch and keeps the returned states."""

    def __init__(self, session, state_inputs: list, dtype: str):
        self.session = session
        self.state_specs = state_inputs  # manifest TensorIO for past.* (shape with symbolic dims)
        self.out_names = [o.name for o in session.get_outputs()]
        self.dtype = dtype
        self.state: dict[str, np.ndarray] | None = None
        self.past = 0

    def reset(self) -> None:
        self.state, self.past = None, 0

    def _empty_state(self, batch: int) -> dict[str, np.ndarray]:
        state = {}
        for spec in self.state_specs:
            shape = [batch if d == "batch" else 0 if d == "past" else d for d in spec.shape]
            if any(isinstance(d, str) for d in shape):
                raise ValueError(f"state {spec.name} has an unknown symbolic dim in {spec.shape}")
            state[spec.name] = np.zeros(shape, dtype=_NP.get(spec.dtype, np.float32))
        return state

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        b, t = input_ids.shape
        if self.state is None:
            self.state = self._empty_state(b)
        feeds = {
            "input_ids": input_ids.astype(np.int64),
            "position_ids": np.broadcast_to(self.past + np.arange(t, dtype=np.int64), (b, t)).copy(),
            "attention_mask": np.ones((b, self.past + t), dtype=np.int64),
            **self.state,
        }
        outs = dict(zip(self.out_names, self.session.run(None, feeds), strict=True))
        self.state = {name: outs["present" + name[len("past") :]] for name in self.state}
        self.past += t
        return outs["logits"].astype(np.float32)

    def states(self) -> list[np.ndarray]:
        return [self.state[s.name].astype(np.float32) for s in self.state_specs]
