"""`deploykit export MODEL -o OUT/`: ONNX with the deploykit op domain, weights streamed as external data."""

from __future__ import annotations

from pathlib import Path

import typer

EXAMPLES = """Examples:

  deploykit export path/to/Qwen3.5-2B -o out/                     # checkpoint directory

  deploykit export qwen3.5-2b --weights ~/ckpt/Qwen3.5-2B -o out/ --dtype fp16

  deploykit export qwen3.5-35b-a3b --random-weights --layers 4 -o out/   # no weights needed

  deploykit export path/to/ckpt -o out-std/ --decompose          # standard ONNX ops only"""


def register(app: typer.Typer) -> None:
    @app.command("export", epilog=EXAMPLES)
    def export(
        model: str = typer.Argument(..., help="Checkpoint directory or catalog alias (e.g. qwen3.5-2b)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output directory (written atomically)."),
        weights: Path | None = typer.Option(None, help="Checkpoint directory for a catalog alias."),
        dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16."),
        layers: int | None = typer.Option(None, help="Export only the first N decoder layers."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Deterministic random weights."),
        seed: int = typer.Option(0, help="Seed of --random-weights."),
        decompose: bool = typer.Option(False, help="Inline the deploykit ops: standard ONNX ops only."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Export a Qwen3.5 model to ONNX (one graph for prefill and decode, explicit states)."""
        from deploykit.export import export_onnx

        r = export_onnx(model, out, dtype=dtype, layers=layers, random_weights=random_weights, seed=seed,
                        decompose=decompose, weights=weights, progress=not quiet)
        m = r.manifest
        typer.echo(f"wrote {r.model_path} (+ model.onnx.data, {r.bytes_written / 2**20:.1f} MiB in "
                   f"{r.tensors_written} tensors, {m.dtype}, opset {m.opset}) in {r.seconds:.1f} s")
        typer.echo(f"TensorRT readiness: {m.readiness.nodes_checked} nodes checked against "
                   f"{m.readiness.parser_ops_source}: "
                   + ("all ready" if not m.readiness.not_ready else f"{len(m.readiness.not_ready)} NOT ready"))
        for line in m.readiness.not_ready:
            typer.echo(f"  not ready: {line}")
