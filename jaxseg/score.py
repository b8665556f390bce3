"""IDD's official metrics on two folders of label PNGs (SPEC 4, 7).

`python -m jaxseg.score --pred DIR --gt DIR [--json FILE] [--split NAME]` searches both
folders recursively and pairs files by stem, with `_gtFine_labellevel3Ids` and the usual
prediction suffixes (`_pred`, `_prediction`, `_leftImg8bit`, `_labelIds`, `_labellevel3Ids`)
removed: `gtFine/val/201/frame0029_gtFine_labellevel3Ids.png` pairs with
`out/frame0029_pred.png` or `out/201/frame0029_leftImg8bit_pred.png`. Where a stem occurs
in several sequence folders (IDD Part II restarts frame numbers), the prediction's folders
must also match the tail of the ground truth's. A prediction of another size than its label is
resized to the label with nearest neighbour (the label never is). One confusion matrix over
all images gives the metrics of `jaxseg.metrics`.
"""

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from jaxseg import cli, metrics, progress
from jaxseg.classes import CLASS_NAMES, NUM_CLASSES, SEED_CLASSES
from jaxseg.data import sources
from jaxseg.data.prepare import write_atomic
from jaxseg.errors import DataError

SUFFIXES = (
    "_gtFine_labellevel3Ids",
    "_labellevel3Ids",
    "_labelIds",
    "_prediction",
    "_pred",
    "_leftImg8bit",
)


def match_key(path: Path) -> str:
    """A label file's stem without the IDD and prediction suffixes (`frame0029`)."""
    stem, previous = path.stem, None
    while stem != previous:  # Suffixes stack: `frame0029_leftImg8bit_pred`.
        previous, stem = stem, sources.strip_suffix(stem, SUFFIXES)
    return stem


def find_labels(folder: str | Path, what: str) -> list[Path]:
    """The label PNGs under a folder, sorted.

    In a folder holding IDD ground truth (`*_gtFine_labellevel3Ids.png`), only those: IDD's
    tools also leave colour and other-level PNGs beside them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such {what} folder")
    pngs = sorted(folder.rglob("*.png"))
    level3 = [p for p in pngs if p.name.endswith(sources.LABEL_SUFFIX)]
    if not pngs:
        raise DataError(f"{folder}: no {what} PNGs found")
    return level3 or pngs


def _folders(path: Path, root: Path) -> tuple[str, ...]:
    return path.parent.relative_to(root).parts


def _tail_matches(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True if the shorter folder path is the tail of the longer (`()` matches any)."""
    n = min(len(a), len(b))
    return a[len(a) - n :] == b[len(b) - n :]


def match_files(pred_dir: str | Path, gt_dir: str | Path) -> list[tuple[Path, Path]]:
    """(ground truth, prediction) pairs for every ground-truth label under `gt_dir`.

    Files pair by `match_key`; where a key is not unique on either side, the prediction's
    folders must also be the tail of the ground truth's (or the reverse).

    Raises:
      DataError: a ground truth without a prediction, or a pairing that is ambiguous.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    predictions = defaultdict(list)
    for path in find_labels(pred_dir, "prediction"):
        predictions[match_key(path)].append(path)
    ground_truths = find_labels(gt_dir, "ground-truth")
    gt_keys = Counter(match_key(gt) for gt in ground_truths)
    pairs, used = [], {}
    for gt in ground_truths:
        key = match_key(gt)
        candidates = predictions.get(key, [])
        if len(candidates) > 1 or gt_keys[key] > 1:
            gt_folders = _folders(gt, gt_dir)
            candidates = [p for p in candidates if _tail_matches(_folders(p, pred_dir), gt_folders)]
        if not candidates:
            raise DataError(f"{gt}: no prediction for {key!r} under {pred_dir}")
        if len(candidates) > 1:
            raise DataError(f"{gt}: several predictions match: {candidates[0]}, {candidates[1]}")
        (pred,) = candidates
        if pred in used:
            raise DataError(
                f"{pred}: matches both {used[pred]} and {gt} "
                "(keep the sequence folders in the prediction folder)"
            )
        used[pred] = gt
        pairs.append((gt, pred))
    return pairs


def resize_nearest(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[h, w] uint8 ids -> [H, W] by nearest neighbour (ids are never interpolated)."""
    if label.shape == tuple(shape):
        return label
    return np.asarray(Image.fromarray(label).resize((shape[1], shape[0]), Image.NEAREST))


def pair_confusion(gt_path: Path, pred_path: Path) -> np.ndarray:
    """[26, 27] int64 confusion matrix of one image pair at the label's resolution."""
    label = sources.read_label(str(gt_path))
    prediction = resize_nearest(sources.read_label(str(pred_path)), label.shape)
    return np.asarray(metrics.confusion_matrix(label, prediction), np.int64)


def score_folders(pred_dir: str | Path, gt_dir: str | Path, *, show_progress: bool = False) -> dict:
    """The official metrics of the predictions under `pred_dir` against `gt_dir`.

    Returns:
      {"pixel_accuracy", "mean_iou", "iou": {class: IoU, NaN if absent}, "images": n}.
    """
    pairs = match_files(pred_dir, gt_dir)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)
    for gt, pred in tqdm(pairs, unit="image", file=sys.stderr, disable=not show_progress):
        confusion += pair_confusion(gt, pred)
    return {**metrics.metrics_from_confusion(confusion), "images": len(pairs)}


def results_record(scores: dict, split: str) -> dict:
    """The results.json schema of SPEC 7 for a scoring run (no training: zero steps)."""
    return {
        "experiment": "score",
        "split": split,
        "pixel_accuracy": scores["pixel_accuracy"],
        "mean_iou": scores["mean_iou"],
        "iou": scores["iou"],
        "steps": 0,
        "epochs": 0.0,
        "train_images_per_sec": 0.0,
    }


def format_scores(scores: dict) -> str:
    """PA, mIoU, the seed's five classes, then all 26 classes, one per line."""
    width = 27  # "  25 non-drivable fallback " fits.
    lines = [
        f"{'images':<{width}}{scores['images']}",
        f"{'pixel accuracy':<{width}}{scores['pixel_accuracy']:.4f}",
        f"{'mean IoU':<{width}}{scores['mean_iou']:.4f}",
    ]
    lines += [f"{name:<{width}}{scores['iou'][name]:.4f}" for name in SEED_CLASSES]
    lines.append("all classes (nan: absent from ground truth and predictions)")
    lines += [
        f"{f'  {i:>2} {name}':<{width}}{scores['iou'][name]:.4f}"
        for i, name in enumerate(CLASS_NAMES)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Score predicted label PNGs against ground truth (IDD's metrics).")
    parser.add_argument("--pred", required=True, help="folder of predicted level-3 id PNGs")
    parser.add_argument("--gt", required=True, help="folder of ground-truth level-3 id PNGs")
    parser.add_argument("--json", help="write the results (results.json schema) to this file")
    parser.add_argument("--split", help="split name for the JSON (default: the gt folder's)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        scores = score_folders(args.pred, args.gt, show_progress=sys.stderr.isatty())
        print(format_scores(scores))
        if args.json:
            split = args.split or Path(args.gt).resolve().name
            record = progress.to_json(results_record(scores, split), indent=2) + "\n"
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(record.encode(), Path(args.json))


if __name__ == "__main__":
    main()
