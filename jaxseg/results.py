"""The one results record that training (`results.json`), evaluation (`eval_SPLIT.json`) and
scoring (`score --json`) write, and its reading back.

Fields: "experiment", "split", "data" (where the numbers come from: "synthetic" or the
dataset path), "labels" (the label space), "pixel_accuracy", "mean_iou", "iou" ({class:
IoU, null for a class absent from the split}), "mean_accuracy", "fw_iou" (frequency-weighted
IoU), "accuracy" and "dice" ({class: float}, null as in "iou"), "confusion" ([K][K + 1]
pixel counts: rows are ground-truth classes, columns predicted classes and last the void
predictions), "steps", "epochs", "train_images_per_sec", plus whatever the writer adds
(e.g. "images"; training and `jaxseg.evaluate` add "eval": {"mode", "flip", "scales"}, the
evaluation mode of `jaxseg.segment`). The metrics are those of
`jaxseg.metrics.metrics_from_confusion`.
"""

import json
import math
from pathlib import Path

from jaxseg.data.labels import LabelSpace, get_label_space
from jaxseg.errors import DataError
from jaxseg.files import to_json, write_atomic


def record(
    *,
    experiment: str,
    split: str,
    data: str,
    label_space: LabelSpace,
    metrics: dict,
    steps: int = 0,
    epochs: float = 0.0,
    train_images_per_sec: float = 0.0,
    **extra,
) -> dict:
    """The results record of `metrics` (from `jaxseg.metrics.metrics_from_confusion`)."""
    return {
        "experiment": experiment,
        "split": split,
        "data": data,
        "labels": label_space.name,
        "pixel_accuracy": metrics["pixel_accuracy"],
        "mean_iou": metrics["mean_iou"],
        "iou": metrics["iou"],
        "mean_accuracy": metrics["mean_accuracy"],
        "fw_iou": metrics["fw_iou"],
        "accuracy": metrics["accuracy"],
        "dice": metrics["dice"],
        "confusion": metrics["confusion"],
        "steps": int(steps),
        "epochs": float(epochs),
        "train_images_per_sec": float(train_images_per_sec),
        **extra,
    }


def write(path: str | Path, results: dict) -> Path:
    """Writes a record as strict JSON (NaN as null), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic((to_json(results, indent=2) + "\n").encode(), path)
    return path


def _float(value) -> float:
    # Results files store NaN as null.
    return math.nan if value is None else float(value)


def _number(value, path: Path, key: str) -> float:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return _float(value)
    raise DataError(f"{path}: {key} is {value!r}, expected a number")


def load(path: str | Path) -> dict:
    """Reads and checks a results file; null scores become NaN.

    Returns:
      {"experiment": str, "pixel_accuracy": float, "mean_iou": float, "iou": {name: float},
      ...the file's other fields}; "labels" defaults to idd_level3 (files written before
      label spaces existed).

    Raises:
      DataError: the file is missing, not JSON, or lacks a field; the message names it.
    """
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (has the run finished?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key, kind in (
        ("experiment", str),
        ("pixel_accuracy", None),
        ("mean_iou", None),
        ("iou", dict),
    ):
        if key not in results:
            raise DataError(f"{path}: missing field {key!r}")
        if kind is not None and not isinstance(results[key], kind):
            raise DataError(f"{path}: {key} is {results[key]!r}, expected {kind.__name__}")
    return {
        "labels": "idd_level3",
        **results,
        "pixel_accuracy": _number(results["pixel_accuracy"], path, "pixel_accuracy"),
        "mean_iou": _number(results["mean_iou"], path, "mean_iou"),
        "iou": {k: _number(v, path, f"iou[{k!r}]") for k, v in results["iou"].items()},
    }


def summary(results: dict) -> str:
    """One line: PA, mIoU and the label space's headline classes."""
    headline = get_label_space(results.get("labels", "idd_level3")).headline
    parts = [f"PA {results['pixel_accuracy']:.4f}", f"mIoU {results['mean_iou']:.4f}"]
    parts += [f"{name} {_float(results['iou'].get(name)):.4f}" for name in headline]
    return f"{results['experiment']} on {results['split']}: " + ", ".join(parts)
