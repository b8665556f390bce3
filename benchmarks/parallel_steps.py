"""Train-step time of the two data-parallel modes on 1, 2 and 4 devices.

    python -m benchmarks.parallel_steps [--model fcn] [--height 128 --width 256 --batch 8]
        [--steps 10] [--devices 1,2,4] [--no-append]

On a CPU the devices are forced host devices (`--xla_force_host_platform_device_count`,
set before jax is imported), which share the machine's cores: the figures show the modes'
overhead, not a speed-up. Each setting compiles `jaxseg.steps.train_step` through
`jaxseg.parallel` exactly as training does (same global batch; random images and labels,
no input pipeline), runs 2 warm-up steps, then times `--steps` steps one by one (blocking
on each) and reports the median seconds per step. Prints a table and appends it to
benchmarks/RESULTS.md.
"""

import argparse
import os
import time
from pathlib import Path

from benchmarks import common

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _force_host_devices(count: int) -> None:
    if DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DEVICE_FLAG}={count}"


def step_seconds(config, mode: str, devices: int, steps: int) -> float:
    """Median seconds of one training step with `devices` devices in `mode`."""
    import jax
    import numpy as np

    from jaxseg import parallel, state, steps
    from jaxseg.data.labels import IDD_LEVEL3

    strategy = parallel.create(mode, num_devices=devices)
    data = config.data
    created = state.create(
        config,
        IDD_LEVEL3,
        image_shape=(data.batch_size, data.height, data.width, 3),
        total_updates=100,
        bn_axis_name=strategy.axis_name,
    )
    train_state = strategy.place_state(strategy.unreplicated(created.state))
    train_step = steps.compile_steps(
        config, strategy, IDD_LEVEL3.num_classes, None, train_state
    ).train
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(data.batch_size, data.height, data.width, 3)).astype("f4"),
        "label": rng.integers(0, 27, (data.batch_size, data.height, data.width), dtype="i4"),
    }
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        train_state, metrics = train_step(train_state, strategy.place_batch(batch))
        jax.block_until_ready((train_state, metrics))
        if i >= 2:  # The first step compiles, the second settles.
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    counts = [int(c) for c in args.devices.split(",")]
    _force_host_devices(max(counts))

    from jaxseg.config import load_config

    config = load_config(
        "baseline",
        data="/unused",
        overrides=[
            f"model.name='{args.model}'",
            f"data.height={args.height}",
            f"data.width={args.width}",
            f"data.batch_size={args.batch}",
        ],
    )
    rows = []
    for mode in ("sharding", "pmap"):
        for count in counts:
            seconds = step_seconds(config, mode, count, args.steps)
            rows.append((mode, count, seconds, f"{args.batch / seconds:.1f}"))
    lines = [
        f"## parallel_steps: {args.model} {args.height}x{args.width}, global batch "
        f"{args.batch}, fp32, median of {args.steps} steps",
        "",
        *common.header(),
        "",
        *common.markdown_table(("mode", "devices", "s/step", "images/s"), rows),
    ]
    print("\n".join(lines))
    if not args.no_append:
        common.append_results(Path(__file__).with_name("RESULTS.md"), lines)


if __name__ == "__main__":
    main()
