"""`deploykit export MODEL -o OUT/`: ONNX with the deploykit op domain, weights streamed as external data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = """Examples:

  deploykit export path/to/Qwen3.5-2B -o out/                     # checkpoint directory

  deploykit export qwen3.5-2b --weights ~/ckpt/Qwen3.5-2B -o out/ --dtype fp16

  deploykit export qwen3.5-35b-a3b --random-weights --layers 4 -o out/   # no weights needed

  deploykit export path/to/ckpt -o out-std/ --decompose          # standard ONNX ops only"""


def register(app: typer.Typer) -> None:
    @app.command("export", epilog=EXAMPLES)
    def export(
        model: Annotated[
            str, typer.Argument(help="Checkpoint directory or catalog alias (e.g. qwen3.5-2b).")
        ],
        out: Annotated[Path, typer.Option("-o", "--out", help="Output directory (written atomically).")],
        weights: Annotated[
            Path | None, typer.Option(help="Checkpoint directory for a catalog alias.")
        ] = None,
        dtype: Annotated[str, typer.Option(help="fp32, fp16 or bf16.")] = "fp32",
        layers: Annotated[int | None, typer.Option(help="Export only the first N decoder layers.")] = None,
        random_weights: Annotated[
            bool, typer.Option("--random-weights", help="Deterministic random weights.")
        ] = False,
        seed: Annotated[int, typer.Option(help="Seed of --random-weights.")] = 0,
        decompose: Annotated[
            bool, typer.Option(help="Inline the deploykit ops: standard ONNX ops only.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Export a Qwen3.5 model to ONNX (one graph for prefill and decode, explicit states)."""
        from deploykit.errors import require

        for module in ("torch", "onnx", "onnxscript", "safetensors"):
            require(module, "export")
        from deploykit.export import export_onnx

        r = export_onnx(
            model,
            out,
            dtype=dtype,
            layers=layers,
            random_weights=random_weights,
            seed=seed,
            decompose=decompose,
            weights=weights,
            progress=not quiet,
        )
        m = r.manifest
        typer.echo(
            f"wrote {r.model_path} (+ model.onnx.data, {r.bytes_written / 2**20:.1f} MiB in "
            f"{r.tensors_written} tensors, {m.dtype}, opset {m.opset}) in {r.seconds:.1f} s"
        )
        typer.echo(
            f"TensorRT readiness: {m.readiness.nodes_checked} nodes checked against "
            f"{m.readiness.parser_ops_source}: "
            + ("all ready" if not m.readiness.not_ready else f"{len(m.readiness.not_ready)} NOT ready")
        )
        for line in m.readiness.not_ready:
            typer.echo(f"  not ready: {line}")
