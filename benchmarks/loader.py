"""Input-pipeline throughput: grain against a torch DataLoader, and label preparation.

    python -m benchmarks.loader [--images 200] [--json-files 500] [--workers 2]

Loader: 1920x1080 JPEGs decoded with Pillow (`jaxseg.data.sources.read_image`), resized
bilinearly to 720x1280 and ImageNet-normalised (`jaxseg.data.transforms.normalize`), in
batches of 4, by grain (`MapDataset ... to_iter_dataset().mp_prefetch(...)`) and by a torch
`DataLoader`, each with the same worker count and the same per-image function. Throughput
is whole-run images / s, with and without start-up (a fresh loader's time to one batch).
Prepare: polygon JSONs of 1920x1080 images with 50-100 polygons each rasterised to label
PNGs by `jaxseg.data.prepare` with the same worker count. Prints a table; writes nothing
outside a temporary folder.
"""

import argparse
import io
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import grain
import numpy as np
from absl import flags
from PIL import Image

from benchmarks import common
from jaxseg.data import prepare, sources, transforms
from jaxseg.data.labels import IDD_LABELS

HEIGHT, WIDTH = 1080, 1920
OUT_HEIGHT, OUT_WIDTH = 720, 1280
BATCH = 4


def scene(rng: np.random.Generator) -> np.ndarray:
    """A [1080, 1920, 3] uint8 driving-scene-like picture: sky, buildings, road, noise.

    Photo-like smoothness matters: JPEG decode time grows with the entropy of the image.
    """
    rows = np.linspace(0, 1, HEIGHT)[:, None, None]
    image = np.where(rows < 0.45, [90, 140, 210] + 60 * rows, [110, 105, 100] - 30 * rows)
    image = np.broadcast_to(image, (HEIGHT, WIDTH, 3)).copy()
    for _ in range(40):
        x, y = rng.integers(0, WIDTH - 200), rng.integers(100, HEIGHT // 2)
        image[y : y + rng.integers(50, 400), x : x + rng.integers(40, 300)] = rng.integers(
            30, 230, 3
        )
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int) -> list[str]:
    """`count` JPEG files (quality 90) cycling through 8 distinct scenes."""
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(min(count, 8)):
        buffer = io.BytesIO()
        Image.fromarray(scene(rng)).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    paths = [folder / f"{i:05d}_leftImg8bit.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(encoded[i % len(encoded)])
    return [str(p) for p in paths]


def load(path: str) -> np.ndarray:
    """The per-image work both loaders do: decode, resize to 720x1280, normalise."""
    image = Image.fromarray(sources.read_image(path))
    resized = np.asarray(image.resize((OUT_WIDTH, OUT_HEIGHT), Image.BILINEAR))
    return transforms.normalize(resized)


def timed(make_batches, paths: list[str], *, startup: bool = True) -> tuple[float, float, int]:
    """(start-up s, total s, images) of a fresh loader reading every path.

    Loaders buffer ahead (grain fills its workers' buffers before yielding anything), so
    throughput is taken over whole runs: images / total, and images / (total - start-up)
    where start-up is the time a fresh loader takes to deliver a single batch (0 with
    `startup=False`).
    """
    start = time.perf_counter()
    if startup:
        for _ in make_batches(paths[:BATCH]):
            pass
    startup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    images = sum(len(batch) for batch in make_batches(paths))
    return startup_seconds, time.perf_counter() - start, images


def single_batches(paths: list[str]):
    """No loader: the work in this process, one image after another."""
    for path in paths:
        yield [load(path)]


def grain_batches(paths: list[str], workers: int):
    """Batches of `load` over the paths by grain with `workers` processes."""
    # grain's worker processes read absl flags (docs/parity.md, environment notes).
    flags.FLAGS.mark_as_parsed()
    return (
        grain.MapDataset.source(paths)
        .map(load)
        .batch(BATCH, drop_remainder=True)
        .to_iter_dataset()
        .mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    )


class _TorchImages:
    """A map-style torch dataset applying `load` to each path."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return load(self.paths[index])  # The DataLoader's collation makes tensors.


def torch_batches(paths: list[str], workers: int):
    """Batches of `load` over the paths by a torch DataLoader with `workers` processes."""
    # Imported here: grain's workers import this module for `load` and need no torch.
    import torch

    torch.set_num_threads(1)  # Workers are the parallelism, as in grain.
    # Spawned like grain's workers: forking a process that has JAX's threads can deadlock
    # (benchmarks.all and the tests import JAX before the loaders run).
    return torch.utils.data.DataLoader(
        _TorchImages(paths),
        batch_size=BATCH,
        num_workers=workers,
        drop_last=True,
        multiprocessing_context="spawn" if workers else None,
    )


def random_polygon(rng: np.random.Generator) -> list[list[float]]:
    """A star-shaped polygon of 4-30 vertices somewhere on (or partly off) the image."""
    n = int(rng.integers(4, 31))
    cx, cy = rng.uniform(-100, WIDTH + 100), rng.uniform(-100, HEIGHT + 100)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(20, 400, n)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).tolist()


def write_polygon_jsons(root: Path, count: int) -> None:
    """`count` IDD polygon JSONs of 1920x1080 images with 50-100 polygons each."""
    rng = np.random.default_rng(0)
    names = [label.name for label in IDD_LABELS]
    folder = root / "gtFine" / "train" / "0"
    folder.mkdir(parents=True)
    for i in range(count):
        objects = [
            {"label": names[rng.integers(len(names))], "polygon": random_polygon(rng)}
            for _ in range(rng.integers(50, 101))
        ]
        data = {"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects}
        (folder / f"{i:06d}{prepare.POLYGONS_SUFFIX}").write_text(json.dumps(data))


def bench_prepare(root: Path, workers: int) -> float:
    """Seconds `jaxseg.data.prepare` takes to make every label PNG under `root`."""
    start = time.perf_counter()
    prepare.prepare_root(root, workers=workers)
    return time.perf_counter() - start


def best_runs(loaders: dict, repeats: int) -> dict[str, tuple[float, float, int]]:
    """Each loader's fastest of `repeats` interleaved runs (the machine may be shared)."""
    best = {}
    for _ in range(repeats):
        for name, run in loaders.items():
            result = run()
            if name not in best or result[1] < best[name][1]:
                best[name] = result
    return best


def run(args: argparse.Namespace) -> list[str]:
    """Runs both loaders and the label preparation; returns the printed lines."""
    workers = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = write_jpegs(tmp / "images", args.images)
        write_polygon_jsons(tmp / "idd", args.json_files)
        loaders = {
            "one process, no loader": partial(
                timed, single_batches, paths[: args.images // 4], startup=False
            ),
            "grain mp_prefetch": partial(timed, partial(grain_batches, workers=workers), paths),
            "torch DataLoader": partial(timed, partial(torch_batches, workers=workers), paths),
        }
        runs = best_runs(loaders, args.repeats)
        prepare_seconds = bench_prepare(tmp / "idd", workers)

    lines = [
        f"device: {common.cpu_name()}, {os.cpu_count()} cores, load {common.load_average()}",
        "versions: " + common.versions(("grain", "torch", "pillow", "numpy")),
        f"loader: {args.images} JPEGs {WIDTH}x{HEIGHT} -> decode, resize {OUT_HEIGHT}x{OUT_WIDTH},"
        f" ImageNet normalise, batch {BATCH}; best of {args.repeats}",
    ]
    rows, whole, net = [], {}, {}
    for name, (startup, total, images) in runs.items():
        whole[name], net[name] = images / total, images / (total - startup)
        n = 1 if name.startswith("one") else workers
        rows.append([name, n, f"{startup:.2f}", f"{whole[name]:.1f}", f"{net[name]:.1f}"])
    headers = ("loader", "workers", "start-up s", "images/s whole run", "images/s net")
    lines += common.markdown_table(headers, rows)
    grain_name, torch_name = "grain mp_prefetch", "torch DataLoader"
    lines.append(
        f"prepare: {args.json_files} polygon JSONs ({WIDTH}x{HEIGHT}, 50-100 polygons), "
        f"{workers} workers: {args.json_files / prepare_seconds:.1f} files/s "
        f"({prepare_seconds:.1f} s)"
    )
    lines.append(
        f"ratio grain / torch images/s: {whole[grain_name] / whole[torch_name]:.2f} whole run, "
        f"{net[grain_name] / net[torch_name]:.2f} net of start-up (target >= 1)"
    )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="JPEGs per loader run")
    parser.add_argument("--json-files", type=int, default=500, help="polygon JSONs to prepare")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeats", type=int, default=2, help="runs per loader; best kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print("\n".join(run(parse_args(argv))))


if __name__ == "__main__":
    main()
