"""One training step, jaxseg against PyTorch, side by side in one process.

    python -m benchmarks.train_step --model unet --height 256 --width 512 --batch 2 \\
        [--dtype fp32|bf16] [--option base_width=16]

Both frameworks start from the same weights (``benchmarks.pairs``) and do forward,
backward and an Adam update on the same random batch: jaxseg's jitted ``train_step``
(buffers donated) and a PyTorch eager step; on a GPU also ``torch.compile`` (``--dtype
bf16``: jaxseg computes in bfloat16 with float32 weights, torch runs under autocast bf16).
After ``--warmup`` steps each, steps are timed in interleaved rounds (``--min-steps`` to
``--max-steps`` within ``--budget`` seconds). In one process the frameworks disturb each
other; ``--only jax|torch`` times one alone, and ``--processes N`` runs ``--only jax`` and
``--only torch`` in fresh processes, alternating, N rounds (``benchmarks.processes``): the
fair ratio on a shared CPU. Prints one table — median and min-max
s/step, images/s, peak memory (device peak on GPU; on CPU the RSS growth over the first
step), compile time, the first step's loss (equal up to rounding from equal weights where
the model has no dropout), XLA's FLOPs and MFU — and the JAX / PyTorch time ratio last.
"""

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jaxseg import cli

if __name__ == "__main__":
    # Before jax and torch are imported (see the function's docstring).
    cli.reexec_with_huge_pages("benchmarks.train_step")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import common, pairs, processes  # noqa: E402
from jaxseg import steps  # noqa: E402

# The CPU fp32 bounds on jaxseg's time over torch eager's.
CPU_TARGETS = {"fcn": 0.8, "custom": 0.8, "unet": 0.8, "deeplabv3_resnet101": 1.0}


def parse_options(items: list[str]) -> dict:
    """["base_width=16", "upsample=bilinear"] -> {"base_width": 16, "upsample": "bilinear"}."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option {item!r}: expected key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def torch_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_batch(batch: int, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{"image": [B, H, W, 3] float32 normal, "label": [B, H, W] int32 in [0, 26)}."""
    rng = np.random.default_rng(seed)
    return {
        "image": rng.standard_normal((batch, height, width, 3), dtype=np.float32),
        "label": rng.integers(0, pairs.NUM_CLASSES, (batch, height, width), dtype=np.int32),
    }


def torch_batch(batch: dict[str, np.ndarray], device: torch.device):
    image = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy()).to(device)
    return image, torch.from_numpy(batch["label"]).long().to(device)


def jax_step(pair: pairs.Pair, batch: dict) -> tuple[Callable[[], float], float, float | None]:
    """(step returning its loss, compile seconds, XLA FLOPs) of jaxseg's train step."""
    state = pairs.jax_train_state(pair)
    # The step donates its state; keep the pair's own weights alive for other uses.
    state = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, state)
    batch = jax.device_put(batch)
    jitted = jax.jit(
        functools.partial(steps.train_step, loss_fn=pairs.jax_loss_terms), donate_argnums=(0,)
    )
    start = time.perf_counter()
    compiled = jitted.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def step() -> float:
        holder[0], metrics = compiled(holder[0], batch)
        jax.block_until_ready((holder[0], metrics))
        return float(metrics["loss"])

    return step, compile_s, common.compiled_flops(compiled)


def torch_step(
    pair: pairs.Pair, image, label, *, amp: bool, compile_model: bool
) -> Callable[[], float]:
    """PyTorch's step: zero grads, forward (under autocast bf16 if `amp`), backward, Adam."""
    device = image.device
    pair.torch_model.to(device)
    pairs.torch_train_mode(pair)
    module = torch.compile(pair.torch_model) if compile_model else pair.torch_model
    optimizer = torch.optim.Adam(pairs.torch_parameters(pair), lr=pairs.LEARNING_RATE)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = pairs.torch_loss(module(image), label)
        loss.backward()
        optimizer.step()
        synchronize(device)
        return float(loss.detach())

    return step


def warm_up(step: Callable[[], float], count: int, device: torch.device) -> tuple[float, float]:
    """(first step's loss, peak memory MiB) over `count` steps (at least one)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with common.PeakRSS() as rss:
        loss = step()
        for _ in range(count - 1):
            step()
    return loss, rss.growth_mib


def device_memory(framework: str, device: torch.device, cpu_mib: float) -> float:
    if device.type != "cuda":
        return cpu_mib
    if framework == common.JAX_ROW:
        return common.jax_peak_device_mib() or 0.0
    return torch.cuda.max_memory_allocated() / common.MIB


def torch_variants(dtype: str, device: torch.device, compile_mode: str) -> dict[str, dict]:
    """Name -> torch_step kwargs: eager (AMP under bf16), and torch.compile on GPU."""
    amp = dtype == "bf16"
    eager = common.TORCH_EAGER_ROW + (" AMP bf16" if amp else "")
    variants = {}
    if compile_mode == "on" or (compile_mode == "auto" and device.type == "cuda"):
        variants["torch.compile" + (" AMP bf16" if amp else "")] = {
            "amp": amp,
            "compile_model": True,
        }
    variants[eager] = {"amp": amp, "compile_model": False}
    return variants


def run(args: argparse.Namespace) -> common.Result:
    """Builds, compiles, warms up and times both frameworks; see the module docstring."""
    torch.set_num_threads(args.torch_threads)
    device = torch_device()
    pair = pairs.build_pair(args.model, parse_options(args.option), dtype=args.dtype)
    batch = random_batch(args.batch, args.height, args.width)
    image, label = torch_batch(batch, device)

    steps, compile_seconds, flops = {}, {}, None
    if args.only != "torch":
        steps[common.JAX_ROW], compile_seconds[common.JAX_ROW], flops = jax_step(pair, batch)
    if args.only != "jax":
        for name, kwargs in torch_variants(args.dtype, device, args.torch_compile).items():
            steps[name] = torch_step(pair, image, label, **kwargs)
    losses, memory = {}, {}
    for name, step in steps.items():
        start = time.perf_counter()
        losses[name], cpu_mib = warm_up(step, args.warmup, device)
        memory[name] = device_memory(name, device, cpu_mib)
        if name.startswith("torch.compile"):
            # The first call compiles; the warm-up's other calls are ordinary steps.
            compile_seconds[name] = time.perf_counter() - start
    timings = common.time_interleaved(
        steps, min_steps=args.min_steps, max_steps=args.max_steps, budget_s=args.budget
    )
    # Eager's name carries " AMP bf16" under bf16; the ratio line looks for the plain one.
    rows = [
        common.Row(
            common.TORCH_EAGER_ROW if name.startswith(common.TORCH_EAGER_ROW) else name,
            timings[name],
            memory[name],
            compile_seconds.get(name),
            loss=losses[name],
        )
        for name in steps
    ]
    on_cpu = device.type == "cpu"
    target = CPU_TARGETS.get(args.model) if on_cpu and args.dtype == "fp32" else None
    title = (
        f"train step: {pair.describe()} {args.height}x{args.width} batch {args.batch} "
        f"{args.dtype}, Adam; {args.warmup} warm-up, {timed_steps(timings)}"
        f" timed steps each; torch on {device.type}"
        + (" (eager row is AMP bf16)" if args.dtype == "bf16" else "")
    )
    return common.Result(title, args.batch, args.dtype, flops, rows, target)


def timed_steps(timings: dict[str, common.Timing]) -> int:
    return len(next(iter(timings.values())).seconds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags train_step and inference share."""
    parser.add_argument("--model", default="fcn", choices=sorted(pairs.DEFAULT_OPTIONS))
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", default="fp32", choices=sorted(pairs.JAX_DTYPES))
    parser.add_argument(
        "--option", action="append", default=[], help="model field key=value (repeatable)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per framework")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed steps")
    parser.add_argument(
        "--torch-compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="also time torch.compile (auto: on a GPU)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads; XLA's CPU pool has one per core",
    )
    parser.add_argument("--results", help="also append the table to this markdown file")
    parser.add_argument(
        "--only", choices=processes.FRAMEWORKS, help="time one framework alone in this process"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="time each framework alone in its own processes, alternating, N rounds",
    )
    parser.add_argument("--json", help="also write the result to this JSON file")


def main_with(
    parser: argparse.ArgumentParser, argv: list[str] | None, run_fn, module: str
) -> common.Result:
    """Parses flags, runs `run_fn` (or, with ``--processes``, `module` in child processes),
    prints (and optionally appends) the table."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.processes and args.only:
        parser.error("--processes runs both frameworks; drop --only")
    if args.processes:
        result = processes.run_separate(module, argv, args.processes)
    else:
        result = run_fn(args)
    if args.json:
        Path(args.json).write_text(json.dumps(common.result_to_json(result)))
    lines = [*common.header(args.torch_threads), *common.result_lines(result)]
    print("\n".join(lines))
    if args.results:
        common.append_results(args.results, lines)
    return result


def main(argv: list[str] | None = None) -> common.Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return main_with(parser, argv, run, "benchmarks.train_step")


if __name__ == "__main__":
    main()
