"""`deploykit validate OUT/`: the export on ONNX Runtime vs the PyTorch reference; exit 1 on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.validate import DEFAULT_CHUNK, DEFAULT_PREFILL

EXAMPLES = """Examples:

  deploykit validate out/                                  # vs transformers, 3 prompts, 16 decode steps

  deploykit validate out/ --reference deploykit --decode-steps 32 --report report.json

  deploykit validate out/ --prefill-tokens 70 --chunk-tokens 0   # past one 64-token chunk"""


def register(app: typer.Typer) -> None:
    @app.command("validate", epilog=EXAMPLES)
    def validate(
        out: Annotated[Path, typer.Argument(help="Export directory (with deploykit.json).")],
        reference: Annotated[
            str, typer.Option(help="hf (transformers) or deploykit (our PyTorch model).")
        ] = "hf",
        prompts: Annotated[int, typer.Option(help="Sequences in the batch (export traced batch 2).")] = 3,
        decode_steps: Annotated[
            int, typer.Option(help="Greedy T=1 steps after prefill and a second chunk.")
        ] = 16,
        prefill_tokens: Annotated[
            int, typer.Option(help="Tokens of the first chunk, at past 0 (70 crosses a 64-token GDN chunk).")
        ] = DEFAULT_PREFILL,
        chunk_tokens: Annotated[
            int, typer.Option(help="Tokens of the second chunk, on the first one's states (0: none).")
        ] = DEFAULT_CHUNK,
        report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the random prompts.")] = 0,
    ) -> None:
        """Compare the exported model on ONNX Runtime with the PyTorch reference, step by step."""
        from deploykit.errors import DeployKitError, require

        for module in ("torch", "onnxruntime"):
            require(module, "export")
        from deploykit.validate import validate_export

        if report and not report.parent.is_dir():  # before the run, so that its results are not lost
            raise DeployKitError(f"--report folder {report.parent} does not exist", "create it first")
        r = validate_export(out, reference=reference, prompts=prompts, decode_steps=decode_steps,
                            prefill=prefill_tokens, chunk=chunk_tokens, seed=seed)
        if report:
            report.write_text(r.model_dump_json(indent=2) + "\n")
        typer.echo(
            f"{'step':>4} {'kind':<8} {'T':>3} {'past':>5} {'max abs':>10} {'max rel':>10} "
            f"{'cosine':>10} {'top-1':>6}"
        )
        for s in r.steps:
            typer.echo(
                f"{s.step:>4} {s.kind:<8} {s.tokens:>3} {s.past:>5} {s.max_abs_err:>10.3g} "
                f"{s.max_rel_err:>10.3g} {s.cosine:>10.7f} {s.top1_agreement:>6.3f}"
                + ("" if s.passed else "  FAIL")
            )
        worst = max(r.final_states, key=lambda s: s.max_rel_err, default=None)
        if worst:
            typer.echo(f"final states: worst {worst.name} rel err {worst.max_rel_err:.3g}")
        typer.echo(
            f"{'PASSED' if r.passed else 'FAILED'} ({r.dtype}, reference {r.reference}, "
            f"{', '.join(r.providers)}, ORT_ENABLE_BASIC)"
        )
        for f in r.failures:
            typer.echo(f"  {f}", err=True)
        if not r.passed:  # SystemExit, not typer.Exit: main() runs click with standalone_mode=False
            raise SystemExit(1)
