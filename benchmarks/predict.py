"""Prediction speed of a trained run: images/s of `jaxseg.Segmenter` per evaluation mode at
a given image size, and ONNX Runtime against JAX on the exported model.

    python -m benchmarks.predict --workdir runs/baseline [--height 1080 --width 1920] \\
        [--modes resize,whole,slide] [--repeats 3] [--onnx-batch 8]

Each mode runs `--repeats` times on one random uint8 image after a compiling warm-up call;
the table gives the median. The ONNX rows time the same model at the run's training size
(the exported artifact's input): JAX's StableHLO artifact (`jax.export`, the plain XLA
kernels) and the ONNX model in onnxruntime (CPU provider), each on a batch of
`--onnx-batch` images, after their logits are checked against each other. Prints the
device and the versions; timings on shared machines vary with their load.
"""

import platform
import statistics
import time

import jax
import numpy as np

from jaxseg import cli, exported
from jaxseg.inference import Segmenter


def _median_seconds(call, repeats: int) -> float:
    call()  # Compiles.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mode_rows(workdir: str, modes: list[str], image: np.ndarray, repeats: int) -> list[tuple]:
    rows = []
    for mode in modes:
        seg = Segmenter.from_run(workdir, mode=mode)
        seconds = _median_seconds(lambda seg=seg: seg.predict(image[None]), repeats)
        rows.append((f"Segmenter {mode}", f"1x{image.shape[0]}x{image.shape[1]}", 1 / seconds))
    return rows


def onnx_rows(workdir: str, batch: int, repeats: int) -> list[tuple]:
    import onnxruntime

    run = exported.restore_plain(workdir)
    artifact = jax.export.deserialize(bytearray(exported.to_stablehlo(run)))
    session = onnxruntime.InferenceSession(
        exported.to_onnx(run), providers=["CPUExecutionProvider"]
    )
    height, width = run.config.data.height, run.config.data.width
    images = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), np.uint8)
    jax_logits = np.asarray(artifact.call(images))
    ort_logits = session.run(None, {"images": images})[0]
    print(f"max |ONNX Runtime - JAX| logits: {np.abs(jax_logits - ort_logits).max():.2e}")
    jax_s = _median_seconds(lambda: jax.block_until_ready(artifact.call(images)), repeats)
    ort_s = _median_seconds(lambda: session.run(None, {"images": images}), repeats)
    shape = f"{batch}x{height}x{width}"
    return [("JAX StableHLO", shape, batch / jax_s), ("ONNX Runtime", shape, batch / ort_s)]


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("benchmarks.predict", "Prediction speed per evaluation mode; ORT vs JAX.")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument(
        "--modes", default="resize,whole,slide", help="comma-separated; empty: none"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx-batch", type=int, default=8)
    args = parser.parse_args(argv)
    import onnxruntime

    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.processor()}"
    )
    print(
        f"jax {jax.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"python {platform.python_version()}"
    )
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    print("| what | input | images/s |\n| --- | --- | --- |", flush=True)
    for mode in args.modes.split(",") if args.modes else []:
        for name, shape, rate in mode_rows(args.workdir, [mode], image, args.repeats):
            print(f"| {name} | {shape} | {rate:.3f} |", flush=True)
    for name, shape, rate in onnx_rows(args.workdir, args.onnx_batch, args.repeats):
        print(f"| {name} | {shape} | {rate:.3f} |", flush=True)


if __name__ == "__main__":
    main()
