"""`deploykit plan`, `deploykit models`, `deploykit gpus`: typer declarations over deploykit.planner (no torch)."""

from __future__ import annotations

from typing import Annotated

import typer

PLAN_EXAMPLES = """
Examples:

  deploykit plan --gpus 4xA100

  deploykit plan --gpus 2xH100-80GB,1xL40S --model 35b-a3b --precision fp8 --context 128k

  deploykit plan --gpus orin-agx-64 --precision int4 --context 8k --text-only

  deploykit plan --gpus 8xH200 --format json -o plan.json

  deploykit plan --gpus 4xA100 --model ./my-finetune/config.json --explain my-finetune
"""


def plan(
    gpus: Annotated[str, typer.Option("--gpus", "-g", help="Inventory, e.g. 4xA100 or 2xH100-80GB,1xL40S (count defaults to 1).")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Catalog name/alias/HF id or a local config.json / checkpoint folder; repeatable. Default: the whole catalog.")] = None,
    precision: Annotated[str, typer.Option("--precision", "-p", help="bf16, fp8, int4, a comma list (bf16,int4) or all.")] = "all",
    context: Annotated[str, typer.Option("--context", "-c", help="Tokens per sequence (prompt + output), e.g. 8192, 32k, 256k.")] = "32k",
    batch: Annotated[int, typer.Option("--batch", "-b", help="Concurrent sequences the deployment must hold.")] = 1,
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV cache dtype: bf16 or fp8.")] = "bf16",
    state_dtype: Annotated[str, typer.Option("--state-dtype", help="Gated DeltaNet recurrent state dtype: fp32, bf16 or fp16.")] = "fp32",
    text_only: Annotated[bool, typer.Option("--text-only", help="Leave out the vision tower.")] = False,
    no_mtp: Annotated[bool, typer.Option("--no-mtp", help="Leave out the MTP (speculative decoding) layer.")] = False,
    mem_util: Annotated[float | None, typer.Option("--mem-util", help="Fraction of GPU memory to use (default 0.90).")] = None,
    os_reserve_gib: Annotated[float | None, typer.Option("--os-reserve-gib", help="Jetson / DGX Spark: GiB kept for the OS (default 1.5).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or yaml.")] = "table",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    explain: Annotated[str | None, typer.Option("--explain", help="Print the memory waterfall of this model's chosen layouts.")] = None,
) -> None:
    """Which Qwen3.5 checkpoints fit on these GPUs, at which precision and layout, and how fast."""
    from deploykit.planner import plan as planner
    from deploykit.planner import render

    fmt = fmt.lower()
    if fmt not in render.FORMATS:
        render.dump([], fmt)  # raises the one-line error
    result = planner.make_plan(
        gpus, models=model, precision=precision, context=context, batch=batch, kv_dtype=kv_dtype,
        state_dtype=state_dtype, text_only=text_only, mtp=not no_mtp, mem_util=mem_util, os_reserve_gib=os_reserve_gib,
    )
    text = render.plan_table(result) if fmt == "table" else render.dump(result, fmt)
    if explain:
        text += "\n" + render.explain_text(result, explain)
    _emit(text, output)


def models(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or yaml.")] = "table",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """The Qwen3.5 catalog: parameters per component, checkpoint bytes per precision, KV and state sizes."""
    from deploykit.planner import plan as planner
    from deploykit.planner import render

    rows, fmt = planner.list_models(), fmt.lower()
    _emit(render.models_table(rows) if fmt == "table" else render.dump(rows, fmt), output)


def gpus(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or yaml.")] = "table",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Known GPU profiles, their aliases and which precisions TensorRT can run on them."""
    from deploykit.planner import plan as planner
    from deploykit.planner import render

    rows, fmt = planner.list_gpus(), fmt.lower()
    _emit(render.gpus_table(rows) if fmt == "table" else render.dump(rows, fmt), output)


def _emit(text: str, output: str | None) -> None:
    from deploykit.planner import render

    if output:
        render.write_atomic(output, text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=not text.endswith("\n"))


def register(app: typer.Typer) -> None:
    app.command("plan", help=(plan.__doc__ or "") + "\n" + PLAN_EXAMPLES)(plan)
    app.command("models")(models)
    app.command("gpus")(gpus)
