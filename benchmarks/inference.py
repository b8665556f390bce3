"""Eval-mode forward pass, jaxseg against PyTorch, side by side in one process.

    python -m benchmarks.inference --model unet [--height 1088 --width 1920 --batch 1] \\
        [--dtype fp32|bf16]

The defaults are full resolution: IDD's 1080x1920 frames padded to 1088 rows, as the
study's loader did (FCN needs multiples of 32). Same weights, batch and timing as
``benchmarks.train_step`` (``--only``, ``--processes N`` included): jaxseg's jitted
``model.apply(train=False)`` against torch eager under ``torch.inference_mode`` (and
``torch.compile`` on a GPU). The table's
"loss / max abs Δ" column holds each output's largest absolute difference from torch
eager's logits, a parity check at the benchmark's own weights and size.
"""

import argparse
import time
from collections.abc import Callable

from jaxseg import cli

if __name__ == "__main__":
    # Before jax and torch are imported (see the function's docstring).
    cli.reexec_with_huge_pages("benchmarks.inference")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import common, pairs, train_step  # noqa: E402


def jax_forward(pair: pairs.Pair, images: np.ndarray) -> tuple[Callable, float, float | None]:
    """(forward returning logits, compile seconds, XLA FLOPs) of the eval forward."""
    images = jax.device_put(images)

    def forward(variables, x):
        return pairs.jax_logits(pair.flax_model.apply(variables, x, train=False))

    start = time.perf_counter()
    compiled = jax.jit(forward).lower(pair.variables, images).compile()
    compile_s = time.perf_counter() - start

    def step() -> np.ndarray:
        return jax.block_until_ready(compiled(pair.variables, images))

    return step, compile_s, common.compiled_flops(compiled)


def torch_forward(pair: pairs.Pair, image: torch.Tensor, *, amp: bool, compile_model: bool):
    device = image.device
    pair.torch_model.to(device).eval()
    module = torch.compile(pair.torch_model) if compile_model else pair.torch_model

    def step() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = pairs.torch_logits(module(image))
        train_step.synchronize(device)
        return logits

    return step


def _as_nhwc(logits) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        return logits.float().cpu().numpy().transpose(0, 2, 3, 1)
    return np.asarray(logits, dtype=np.float32)


def run(args: argparse.Namespace) -> common.Result:
    torch.set_num_threads(args.torch_threads)
    device = train_step.torch_device()
    pair = pairs.build_pair(args.model, train_step.parse_options(args.option), dtype=args.dtype)
    images = train_step.random_batch(args.batch, args.height, args.width)["image"]
    image, _ = train_step.torch_batch({"image": images, "label": images[..., 0]}, device)

    steps, compile_seconds, flops = {}, {}, None
    if args.only != "torch":
        steps[common.JAX_ROW], compile_seconds[common.JAX_ROW], flops = jax_forward(pair, images)
    if args.only != "jax":
        for name, kwargs in train_step.torch_variants(
            args.dtype, device, args.torch_compile
        ).items():
            steps[name] = torch_forward(pair, image, **kwargs)
    outputs, memory = {}, {}
    for name, step in steps.items():
        start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with common.PeakRSS() as rss:
            outputs[name] = _as_nhwc(step())
            for _ in range(args.warmup - 1):
                step()
        memory[name] = train_step.device_memory(name, device, rss.growth_mib)
        if name.startswith("torch.compile"):
            compile_seconds[name] = time.perf_counter() - start
    # Alone (`--only jax`) there is no torch output to compare with.
    eager_name = next((n for n in steps if n.startswith(common.TORCH_EAGER_ROW)), None)
    reference = outputs.get(eager_name)
    timings = common.time_interleaved(
        steps, min_steps=args.min_steps, max_steps=args.max_steps, budget_s=args.budget
    )
    rows = [
        common.Row(
            common.TORCH_EAGER_ROW if name == eager_name else name,
            timings[name],
            memory[name],
            compile_seconds.get(name),
            max_abs_diff=None
            if reference is None
            else float(np.abs(outputs[name] - reference).max()),
        )
        for name in steps
    ]
    title = (
        f"inference: {pair.describe()} {args.height}x{args.width} batch {args.batch} "
        f"{args.dtype}, eval mode; {args.warmup} warm-up, "
        f"{train_step.timed_steps(timings)} timed steps each; torch on {device.type}"
        + (" (eager row is AMP bf16)" if args.dtype == "bf16" else "")
    )
    return common.Result(title, args.batch, args.dtype, flops, rows)


def main(argv: list[str] | None = None) -> common.Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    train_step.add_arguments(parser)
    parser.set_defaults(height=1088, width=1920, batch=1)
    return train_step.main_with(parser, argv, run, "benchmarks.inference")


if __name__ == "__main__":
    main()
