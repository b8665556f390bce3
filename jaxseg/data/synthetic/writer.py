"""Writing a dataset: parameters, the files of every example (in parallel), the manifest.

A dataset appears at its folder only when complete: it is written into a temporary folder
beside it and renamed, with the manifest (`synthetic.json`) written last.
"""

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from jaxseg.data.labels import label_counts
from jaxseg.data.synthetic.class_sets import class_style
from jaxseg.data.synthetic.file_layout import FileLayout, file_layout
from jaxseg.data.synthetic.params import DEFAULT_PARAMS, DEFAULT_WORKERS, DEFAULTS, SPLITS
from jaxseg.data.synthetic.render import example
from jaxseg.errors import ConfigError, DataError

# Bump when the drawing changes: it is part of the cache key and of the manifest.
GENERATOR_VERSION = 2  # 2: the `classes` parameter; "all" draws exactly as version 1 did.
# Names the generator in the manifest; not `__name__`, which names a submodule.
GENERATOR = "jaxseg.data.synthetic"
MANIFEST = "synthetic.json"
# The integer parameters' valid ranges.
_LIMITS = {
    "train": (1, 99999), "val": (0, 99999), "test": (0, 99999),
    "height": (16, 8192), "width": (16, 8192), "seed": (0, 2**63),
}  # fmt: skip


def validate(params: Mapping[str, object]) -> dict:
    """The parameters with defaults filled in, as manifests and cache keys record them.

    `layout` is left out when it is the default ("idd"): datasets and caches written before
    the parameter existed keep their manifest and cache key.

    Raises:
      ConfigError: an unknown parameter or a bad value (names it).
    """
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ConfigError(
            f"synthetic: unknown parameter(s) {unknown}; valid: {list(DEFAULT_PARAMS)}"
        )
    params = {**DEFAULT_PARAMS, **params}
    class_style(params["classes"])  # ConfigError for an unknown name.
    file_layout(params["layout"])
    for key, (low, high) in _LIMITS.items():
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"synthetic: {key} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"synthetic: {key} must be in [{low}, {high}], got {value}")
    valid = {key: int(params[key]) for key in _LIMITS} | {"classes": params["classes"]}
    if params["layout"] != DEFAULTS.layout:
        valid["layout"] = params["layout"]
    return valid


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset at `root`, or None."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("generator") == GENERATOR else None


def matches(root: Path, params: dict) -> bool:
    """Whether `root` holds a complete dataset of this generator version and `validate`d
    `params`."""
    manifest = read_manifest(root)
    return (
        manifest is not None
        and manifest.get("version") == GENERATOR_VERSION
        and manifest.get("params") == params
    )


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_manifest(out_dir) is None:
        raise DataError(
            f"{out_dir}: folder is not empty and is not a jaxseg synthetic dataset "
            "(choose a new or empty folder)"
        )


def _layout_of(params: dict) -> FileLayout:
    return file_layout(params.get("layout", DEFAULTS.layout))  # `validate` omits the default.


def _write_example(task: tuple) -> np.ndarray:
    """Renders and writes one example; returns its pixel counts (the classes, then void).

    Args:
      task: (root, split, index, validated params): plain values, which spawned worker
        processes receive pickled.
    """
    root, split, index, params = task
    layout = _layout_of(params)
    image, label = example(
        params["seed"], split, index, params["height"], params["width"], params["classes"]
    )
    image_path, label_path = layout.paths(Path(root), split, index, params["seed"])
    stored = layout.label_ids[label]
    Image.fromarray(image).save(image_path, **layout.image_options)
    Image.fromarray(stored).save(label_path)
    train_ids = layout.labels.train_ids(stored, str(label_path))
    return label_counts(train_ids, layout.labels.num_classes)


def _render_all(root: Path, params: dict, workers: int) -> dict[str, list[int]]:
    """Writes every example; returns each split's pixel counts."""
    layout = _layout_of(params)
    tasks = []
    for split in SPLITS:
        for index in range(params[split]):
            for path in layout.paths(root, split, index, params["seed"]):
                path.parent.mkdir(parents=True, exist_ok=True)
            tasks.append((str(root), split, index, params))
    if workers > 1 and len(tasks) > 1:
        # Spawned, not forked: the caller may have started JAX's threads, which fork breaks.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            counts = list(pool.map(_write_example, tasks, chunksize=4))
    else:
        counts = [_write_example(task) for task in tasks]
    totals = {split: np.zeros(layout.labels.num_classes + 1, np.int64) for split in SPLITS}
    for task, count in zip(tasks, counts, strict=True):
        totals[task[1]] += count
    return {split: total.tolist() for split, total in totals.items()}


def _write_dataset(root: Path, params: dict, workers: int) -> None:
    """Writes the examples, then the manifest that marks the dataset complete."""
    pixel_counts = _render_all(root, params, workers)
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "params": params,
        "layout": _layout_of(params).description,
        # Per split: the label space's classes, then void; what class weights are computed from.
        "pixel_counts": pixel_counts,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _move_into_place(tmp: Path, out_dir: Path, params: dict) -> None:
    """Renames the finished `tmp` to `out_dir`, replacing an empty folder or an old dataset."""
    if matches(out_dir, params):  # Another process finished the same dataset first.
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, old)
        else:
            out_dir.rmdir()
    try:
        os.replace(tmp, out_dir)
    except OSError:
        # Another process got there between our check and the rename: keep theirs.
        if not matches(out_dir, params):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def generate(
    out_dir: str | Path,
    *,
    train: int = DEFAULTS.train,
    val: int = DEFAULTS.val,
    test: int = DEFAULTS.test,
    height: int = DEFAULTS.height,
    width: int = DEFAULTS.width,
    seed: int = DEFAULTS.seed,
    classes: str = DEFAULTS.classes,
    layout: str = DEFAULTS.layout,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """Writes a synthetic dataset in IDD's or Cityscapes' layout; every split has labels.

    The manifest `synthetic.json` holds the parameters and per-split pixel counts. A complete
    dataset with the same parameters is left as it is.

    Args:
      out_dir: a new or empty folder, or one holding an earlier synthetic dataset (replaced).
      train, val, test: number of examples per split.
      height, width: image size in pixels.
      seed: the dataset's seed; example i of a split depends only on (seed, split, i).
      classes: a name in `CLASS_SETS`: the classes the scenes contain ("common": the large,
        learnable ones; "all": every level-3 class).
      layout: a name in `FILE_LAYOUTS`: "idd" (JPEG images, level-3 ids) or "cityscapes"
        (PNG images, Cityscapes labelIds) of the same scenes.
      workers: processes that render in parallel; the output does not depend on it.

    Returns:
      `out_dir` as a Path.

    Raises:
      ConfigError: a parameter is out of range.
      DataError: `out_dir` holds something other than a synthetic dataset.
    """
    params = validate(
        {"train": train, "val": val, "test": test, "height": height, "width": width}
        | {"seed": seed, "classes": classes, "layout": layout}
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"synthetic: workers must be a positive integer, got {workers!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    if matches(out_dir, params):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _write_dataset(tmp, params, workers)
        _move_into_place(tmp, out_dir, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
