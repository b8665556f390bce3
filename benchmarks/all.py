"""Every benchmark, written to ``benchmarks/RESULTS.md``.

    python -m benchmarks.all [--out benchmarks/RESULTS.md] [--budget-minutes 19] [--processes N]

Rows: each model (FCN, RRCNN "custom" at depth 5, U-Net base 64, DeepLabV3-ResNet101 with
the transfer experiment's frozen backbone) train step at 256x512 and 512x1024, batch 2, fp32;
on a GPU also bf16 at 720x1280 and 1088x1920 (1080 rounded up to FCN's multiple of 32).
Then the eval forward of each at the largest CPU size, and the input pipeline. Rows run
smallest first; a row whose estimated time (from the same model's smaller row) does not fit
the remaining budget is listed as not run, with the estimate, rather than dropped.
"""

import argparse
import dataclasses
import datetime
import gc
import time
from collections.abc import Callable
from pathlib import Path

from jaxseg import cli

if __name__ == "__main__":
    # Before jax and torch are imported (see the function's docstring).
    cli.reexec_with_huge_pages("benchmarks.all")

import jax  # noqa: E402
import torch  # noqa: E402

from benchmarks import common, inference, loader, processes, train_step  # noqa: E402

MODELS = ("fcn", "custom", "unet", "deeplabv3_resnet101")
CPU_SIZES = ((256, 512), (512, 1024))
GPU_SIZES = ((720, 1280), (1088, 1920))
DEFAULT_OUT = Path(__file__).with_name("RESULTS.md")


@dataclasses.dataclass
class Planned:
    """One benchmark run to do: which CLI, with which flags."""

    kind: str  # "train" or "inference".
    model: str
    height: int
    width: int
    batch: int
    dtype: str
    result: common.Result | None = None
    skipped: str | None = None  # Why it did not run.
    seconds: float | None = None  # Wall time of the run.
    separate: common.Result | None = None  # Each framework alone in its processes.

    def flags(self, budget_s: float, min_steps: int) -> list[str]:
        return [
            f"--model={self.model}",
            f"--height={self.height}",
            f"--width={self.width}",
            f"--batch={self.batch}",
            f"--dtype={self.dtype}",
            f"--min-steps={min_steps}",
            f"--budget={budget_s}",
        ]


def plan(on_gpu: bool, models=MODELS, gpu_batch: int = 8) -> list[Planned]:
    """Train rows smallest first, then GPU rows, then inference at the largest CPU size."""
    rows = [Planned("train", m, h, w, 2, "fp32") for h, w in CPU_SIZES for m in models]
    if on_gpu:
        rows += [Planned("train", m, h, w, gpu_batch, "bf16") for h, w in GPU_SIZES for m in models]
    h, w = CPU_SIZES[-1]
    rows += [Planned("inference", m, h, w, 2, "fp32") for m in models]
    return rows


def estimate_seconds(row: Planned, done: list[Planned]) -> float | None:
    """The row's time scaled by pixels from the same model's last run of the same kind."""
    for prior in reversed(done):
        if prior.kind == row.kind and prior.model == row.model and prior.seconds:
            pixels = row.height * row.width * row.batch
            return prior.seconds * pixels / (prior.height * prior.width * prior.batch)
    return None


def run_rows(
    rows: list[Planned],
    *,
    budget_s: float,
    row_budget_s: float,
    min_steps: int,
    runners: dict[str, Callable] | None = None,
    rounds: int = 0,
    separate_fn: Callable = processes.run_separate,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Runs every row that fits the remaining budget, in order, recording results; with
    `rounds`, each train row also in separate processes (`separate_fn`). `clock` reads the
    time spent (tests pass a fake one)."""
    runners = runners or {"train": train_step.run, "inference": inference.run}
    parsers = {"train": train_step.add_arguments, "inference": train_step.add_arguments}
    start = clock()
    done: list[Planned] = []
    for row in rows:
        left = budget_s - (clock() - start)
        estimate = estimate_seconds(row, done)
        if left <= 0:
            row.skipped = "not run: time budget spent"
            continue
        if estimate is not None and estimate > left:
            row.skipped = f"not run: estimated {estimate:.0f} s > {left:.0f} s left"
            continue
        parser = argparse.ArgumentParser()
        parsers[row.kind](parser)
        flags = row.flags(min(row_budget_s, max(left, 1.0)), min_steps)
        args = parser.parse_args(flags)
        row_start = clock()
        row.result = runners[row.kind](args)
        if rounds and row.kind == "train":
            row.separate = separate_fn("benchmarks.train_step", flags, rounds)
        row.seconds = clock() - row_start
        done.append(row)
        jax.clear_caches()  # Compiled steps of earlier rows hold memory.
        gc.collect()


def _cells(row: Planned) -> list[str]:
    size = [row.model, f"{row.height}x{row.width}", str(row.batch), row.dtype]
    if row.result is None:
        return [*size, row.skipped or "not run", *["-"] * (len(SUMMARY_HEADERS) - 5)]
    result = row.result
    by_name = {r.framework: r for r in result.rows}
    jax_row, torch_row = by_name[common.JAX_ROW], by_name[common.TORCH_EAGER_ROW]
    jax_s, torch_s = jax_row.timing.median, torch_row.timing.median
    gflops, mfu = common.throughput_cells(result.flops, jax_s, result.dtype)
    target = train_step.CPU_TARGETS.get(row.model) if result.target else None
    compiled = by_name.get("torch.compile") or by_name.get("torch.compile AMP bf16")
    eager = common.TORCH_EAGER_ROW
    ratio = f"{result.ratio(eager):.2f} ({result.ratio(eager, fastest=True):.2f})"
    if compiled is not None:
        ratio += f" (compile {result.ratio(compiled.framework):.2f})"
    separate = row.separate
    return [
        *size,
        f"{jax_s:.3f} ({jax_row.timing.spread})",
        f"{torch_s:.3f} ({torch_row.timing.spread})",
        ratio,
        "-" if separate is None else f"{separate.ratio(eager):.2f} ({len(separate.notes)} rounds)",
        "-" if target is None else f"<= {target}",
        f"{row.batch / jax_s:.2f} / {row.batch / torch_s:.2f}",
        f"{jax_row.memory_mib or 0:.0f} / {torch_row.memory_mib or 0:.0f}",
        "-" if result.flops is None else f"{result.flops / 1e9:.0f}",
        f"{gflops} ({mfu})",
    ]


SUMMARY_HEADERS = (
    "model",
    "size",
    "batch",
    "dtype",
    "jaxseg s/step (min-max)",
    "torch s/step (min-max)",
    "ratio median (fastest)",
    "ratio separate processes",
    "target",
    "images/s jax / torch",
    "peak mem MiB jax / torch",
    "GFLOP/step",
    "jax GFLOP/s (MFU)",
)


def results_markdown(
    rows: list[Planned], loader_lines: list[str], *, minutes: float, on_gpu: bool
) -> str:
    """The RESULTS.md text: header, summary tables, loader, then every full table."""
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmarks: jaxseg against PyTorch",
        "",
        f"Written by `python -m benchmarks.all` on {date} in {minutes:.1f} minutes.",
        "",
        *[f"- {line}" for line in common.header(torch.get_num_threads())],
        "- Same weights in both frameworks (`benchmarks/pairs.py`); random batch; Adam; the",
        "  ratio is jaxseg's median time over torch eager's, timed in interleaved rounds in one",
        '  process; "ratio separate processes" times each framework alone in its own process,',
        "  alternating (`--processes N`; median of the per-process medians), the fairer one on",
        "  a shared CPU. Memory: device peak on GPU; on CPU the RSS growth during the first step.",
        "  GFLOP: XLA's cost analysis of the jaxseg step (on CPU, of the formulations that",
        '  `kernels="cpu"` picks). MFU only where the device\'s peak is known (H100/H200).',
        "- Profiles behind the speed changes and what stands in the way: `benchmarks/NOTES.md`.",
        "- custom = RRCNN encoder at depth 5; deeplabv3_resnet101 = the transfer experiment",
        "  (frozen backbone in eval mode, ASPP and heads trained, aux loss 0.5).",
    ]
    if not on_gpu:
        parts.append("- No GPU was available for this run: GPU rows (bf16, torch.compile) absent.")
    for kind, heading in (("train", "Train step"), ("inference", "Inference (eval forward)")):
        selected = [r for r in rows if r.kind == kind]
        if selected:
            parts += ["", f"## {heading}", ""]
            parts += common.markdown_table(SUMMARY_HEADERS, [_cells(r) for r in selected])
    parts += ["", "## Input pipeline (`python -m benchmarks.loader`)", "", *loader_lines]
    parts += ["", "## Full tables", ""]
    for row in rows:
        for result in (row.result, row.separate):
            if result is not None:
                parts += ["```", *common.result_lines(result), "```", ""]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--budget-minutes", type=float, default=19.0, help="whole run")
    parser.add_argument("--row-budget", type=float, default=40.0, help="timed seconds per row")
    parser.add_argument("--min-steps", type=int, default=2, help="timed steps per row, at least")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--loader-images", type=int, default=48)
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="also time each train row in separate processes, alternating, N rounds",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    on_gpu = common.accelerator() is not None
    loader_lines = loader.run(
        loader.parse_args([f"--images={args.loader_images}", "--json-files=40", "--repeats=1"])
    )
    rows = plan(on_gpu, tuple(args.models.split(",")))
    budget_s = 60 * args.budget_minutes - (time.perf_counter() - start)
    run_rows(
        rows,
        budget_s=budget_s,
        row_budget_s=args.row_budget,
        min_steps=args.min_steps,
        rounds=args.processes,
    )
    text = results_markdown(
        rows, loader_lines, minutes=(time.perf_counter() - start) / 60, on_gpu=on_gpu
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
