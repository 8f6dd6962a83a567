"""`deploykit validate`: an exported model on ONNX Runtime against a PyTorch reference on the same weights.

Schedule per run (one batch of `prompts` random sequences): a prefill chunk at past=0, a second multi-token
chunk on top of it, then `decode_steps` greedy T=1 steps; both sides feed their own states back, and both
receive the reference's greedy token so a single disagreement does not derail the rest. Every step is
scored (max abs / rel error, cosine, top-1 agreement) and so are the final states; thresholds per dtype
live in `thresholds.py`.

    report = validate_export("out/", reference="hf", prompts=3, decode_steps=16)
    report.passed, report.model_dump_json()
"""

from __future__ import annotations

from pathlib import Path

from deploykit.errors import DeployKitError

DEFAULT_PREFILL = 7  # tokens of the first chunk: > 1 and not a power of two
DEFAULT_CHUNK = 5  # tokens of the second chunk, run on top of the prefill's states


def _reference(kind: str, manifest, out_dir: Path):
    from deploykit.validate.references import DeploykitReference, HFReference

    full = manifest.config.get("text_config", manifest.config).get("num_hidden_layers") == manifest.layers
    layers = None if full else manifest.layers
    if manifest.random_weights:
        if kind != "deploykit":
            raise DeployKitError(
                f"{out_dir} was exported with --random-weights; transformers has no such weights",
                "use --reference deploykit (same random weights), or export a checkpoint",
            )
        return DeploykitReference(None, manifest.config, layers, manifest.seed)
    checkpoint = Path(manifest.checkpoint_dir or "")
    if not (checkpoint / "config.json").is_file():
        raise DeployKitError(
            f"the checkpoint of this export ({checkpoint}) is not available",
            "validate on the machine that holds the checkpoint",
        )
    if kind == "hf":
        return HFReference(checkpoint, layers)
    if kind == "deploykit":
        return DeploykitReference(checkpoint, manifest.config, layers)
    raise DeployKitError(f"unknown reference {kind!r}", "use --reference hf or --reference deploykit")


def validate_export(
    out_dir: str | Path,
    reference: str = "hf",
    prompts: int = 3,
    decode_steps: int = 16,
    prefill: int = DEFAULT_PREFILL,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    providers: list[str] | None = None,
    model_file: str | None = None,
):
    """Runs the schedule and returns a ValidationReport (`.passed` is the gate)."""
    import numpy as np

    from deploykit.export.manifest import Manifest
    from deploykit.validate.compare import ValidationReport, failures, state_metrics, step_metrics
    from deploykit.validate.ort_runner import OrtModel, make_session
    from deploykit.validate.thresholds import THRESHOLDS

    out_dir = Path(out_dir)
    counts = {"--prompts": (prompts, 1), "--prefill-tokens": (prefill, 1), "--chunk-tokens": (chunk, 0),
              "--decode-steps": (decode_steps, 0)}
    for flag, (value, least) in counts.items():
        if value < least:
            raise DeployKitError(f"{flag} must be >= {least}, got {value}", f"pass {flag} {least} or more")
    manifest = Manifest.read(out_dir)
    if manifest.dtype == "bfloat16":  # numpy has no bfloat16, so the runner cannot feed the bf16 state inputs
        raise DeployKitError("validating a bf16 export is not supported yet (ONNX Runtime is fed numpy arrays, "
                             "and numpy has no bfloat16)", "validate the fp16 or fp32 export of the same checkpoint")
    th = THRESHOLDS[manifest.dtype]
    session = make_session(out_dir / (model_file or manifest.files[0]), providers)
    onnx_model = OrtModel(session, [t for t in manifest.inputs if t.name.startswith("past.")], manifest.dtype)
    ref = _reference(reference, manifest, out_dir)
    vocab = int(manifest.config.get("vocab_size") or manifest.config["text_config"]["vocab_size"])

    rng = np.random.default_rng(seed)
    chunks = [("prefill", rng.integers(0, vocab, (prompts, prefill)))]
    if chunk:
        chunks.append(("chunk", rng.integers(0, vocab, (prompts, chunk))))
    steps, past = [], 0
    ref_logits = None
    for i in range(len(chunks) + decode_steps):
        kind, ids = chunks[i] if i < len(chunks) else ("decode", ref_logits[:, -1:].argmax(-1))
        ref_logits = ref.step(ids)
        steps.append(step_metrics(i, kind, past, onnx_model.step(ids), ref_logits, th))
        past += ids.shape[1]
    names = [t.name for t in manifest.inputs if t.name.startswith("past.")]
    states = [
        state_metrics("present" + n[len("past") :], g, r, th)
        for n, g, r in zip(names, onnx_model.states(), ref.states(), strict=True)
    ]
    fails = failures(steps, states, th)
    return ValidationReport(
        export_dir=str(out_dir),
        reference=reference,
        dtype=manifest.dtype,
        batch=prompts,
        thresholds=th,
        providers=session.get_providers(),
        steps=steps,
        final_states=states,
        worst_rel_err=max(s.max_rel_err for s in steps),
        min_top1=min(s.top1_agreement for s in steps),
        passed=not fails,
        failures=fails,
    )
