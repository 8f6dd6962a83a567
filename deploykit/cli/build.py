"""`deploykit build OUT/`: the exported ONNX in OUT/ -> TensorRT engine + manifest in OUT/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.errors import DeployKitError

EXAMPLES = """Examples:

  deploykit build out/ --backend tensorrt-rtx --target sm89

  deploykit build out/ --target sm89 --target sm120 --max-batch 4 --max-tokens 2048 --max-past 8192

  deploykit build out/model.onnx --no-plugins      # deploykit nodes built from their reference bodies
  deploykit build out/model.onnx --moe-stages      # MoE as single-kernel stage plugins
  deploykit build out/ --max-tokens 8192 --gdn-stages   # long prompts: GatedDeltaRule's three stage kernels
  deploykit build out/ --backend tensorrt --moe-stages --aot-plugins   # PTX kernels: serve without Python"""


def find_onnx(path: Path) -> Path:
    """OUT/ (model.onnx, or its only .onnx file) or an .onnx file."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DeployKitError(f"{path} does not exist", "pass the export output folder or an .onnx file")
    if (path / "model.onnx").is_file():
        return path / "model.onnx"
    found = sorted(path.glob("*.onnx"))
    if len(found) != 1:
        what = "no .onnx file" if not found else f"{len(found)} .onnx files"
        raise DeployKitError(f"{path} holds {what}", "pass the .onnx file itself")
    return found[0]


def register(app: typer.Typer) -> None:
    @app.command("build", epilog=EXAMPLES)
    def build(
        out: Annotated[Path, typer.Argument(help="Export output folder (or an .onnx file).")],
        backend: Annotated[str, typer.Option(help="tensorrt-rtx (builds without a GPU), tensorrt, or auto.")]
        = "tensorrt-rtx",
        target: Annotated[list[str] | None, typer.Option("--target", help="Compute capability, repeat for several "
                                                         "(default: sm89 for tensorrt-rtx, the local GPU for "
                                                         "tensorrt).")] = None,
        max_batch: Annotated[int, typer.Option(help="Largest batch the engine accepts.")] = 1,
        max_tokens: Annotated[int, typer.Option(help="Largest prefill chunk (new tokens per call).")] = 128,
        max_past: Annotated[int, typer.Option(help="Largest past length (tokens already in the cache).")] = 1024,
        plugins: Annotated[bool, typer.Option(help="Use deploykit's plugins; --no-plugins inlines the reference "
                                              "bodies.")] = True,
        moe_stages: Annotated[bool, typer.Option(help="Replace each MoE node by its single-kernel stage plugins "
                                                 "(pairs path up to 4 tokens, else grouped): what ahead-of-time, "
                                                 "Python-free plugins need.")] = False,
        gdn_stages: Annotated[bool, typer.Option(help="Run prompts of 64 tokens or more through GatedDeltaRule's "
                                                 "three stage plugins (chunk-parallel prep and output around the "
                                                 "state scan, as flash-linear-attention does); shorter calls and "
                                                 "decode keep the single-kernel plugin.")] = False,
        aot_plugins: Annotated[bool, typer.Option(help="Embed each plugin's kernel as PTX (tensorrt.plugin "
                                                  "ahead-of-time plugins), so the engine runs without Python, "
                                                  "e.g. in Triton Inference Server. Datacenter TensorRT only; MoE "
                                                  "models need --moe-stages.")] = False,
        opt_level: Annotated[int | None, typer.Option(help="TensorRT builder optimization level 0-5.")] = None,
        dim: Annotated[list[str] | None, typer.Option("--dim", help="NAME=ROLE for a dynamic ONNX dimension "
                                                      "deploykit does not recognise (ROLE: batch, tokens, past, "
                                                      "total, flat).")] = None,
        output: Annotated[Path | None, typer.Option(help="Engine path (default: beside the ONNX).")] = None,
    ) -> None:
        """Build a TensorRT engine and its manifest from an exported model."""
        from deploykit.build.builder import BuildOptions, build_engine
        from deploykit.build.profiles import default_profiles

        onnx_path = find_onnx(out)
        bad = [d for d in dim or [] if d.count("=") != 1]
        if bad:
            raise DeployKitError(f"--dim {bad[0]} is not NAME=ROLE", "for example --dim s53=total")
        options = BuildOptions(backend=backend, targets=target or [], plugins=plugins,
                               optimization_level=opt_level, moe_stages=moe_stages, gdn_stages=gdn_stages,
                               aot_plugins=aot_plugins, dim_roles=dict(d.split("=") for d in dim or []),
                               profiles=default_profiles(max_batch, max_tokens, max_past))
        result = build_engine(onnx_path, output, options)
        _print_summary(result)


def _print_summary(result) -> None:
    m = result.manifest
    layers = ", ".join(f"{k} {v}" for k, v in sorted(m.layer_types.items(), key=lambda kv: -kv[1])[:6])
    typer.echo(f"engine   {result.engine_path} ({m.engine.bytes / 2**20:.1f} MiB, {m.build_seconds:.1f} s)")
    typer.echo(f"built by {m.tensorrt_flavour} {m.tensorrt_version} for {', '.join(m.targets)}")
    typer.echo(f"plugins  {', '.join(f'{p.namespace}::{p.name}/{p.version}' for p in m.plugins) or 'none'}"
               f" ({m.plugin_layers} layers{', ahead-of-time PTX' if m.plugin_kind == 'aot' else ''})")
    typer.echo(f"layers   {layers}")
    if m.moe_stages:
        typer.echo(f"moe      lowered to its stage plugins: {m.moe_stages}")
    if m.gdn_stages:
        typer.echo(f"gdn      lowered to its stage plugins: {m.gdn_stages}")
    typer.echo(f"manifest {result.manifest_path}")
