"""The official metrics on two folders of label PNGs: IDD's, or Cityscapes' (cityscapesscripts).

`python -m jaxseg.score --pred DIR --gt DIR [--labels NAME] [--json FILE] [--split NAME]`
searches both folders recursively and pairs files by stem, with the ground truth's suffix
(`_gtFine_labellevel3Ids`, `_gtFine_labelIds`) and the usual prediction suffixes (`_pred`,
`_prediction`, `_leftImg8bit`, `_labelIds`, `_labellevel3Ids`) removed:
`gtFine/val/201/frame0029_gtFine_labellevel3Ids.png` pairs with `out/frame0029_pred.png` or
`out/201/frame0029_leftImg8bit_pred.png`. Where a stem occurs in several sequence folders
(IDD Part II restarts frame numbers), the prediction's folders must also match the tail of
the ground truth's. A prediction of another size than its label is resized to the label
with nearest neighbour (the label never is). One confusion matrix over all images gives the
metrics of `jaxseg.metrics`.

The label space follows the ground truth (`*_gtFine_labelIds.png`: Cityscapes, else IDD
level 3) unless `--labels` names one (e.g. idd_level1 for IDD's level-1 ids predicted from
level-3 ground truth). Predictions hold the label space's ids, as `jaxseg.predict` writes
them (Cityscapes: labelIds); a predicted id of no evaluated class (void, an ignored
Cityscapes label) is a miss, as in both official evaluations.
"""

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from jaxseg import cli, metrics, results
from jaxseg.data import sources
from jaxseg.data.labels import LABEL_SPACES, LabelSpace, get_label_space
from jaxseg.errors import DataError

SUFFIXES = (
    "_gtFine_labellevel3Ids",
    "_gtFine_labelIds",
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


def ground_truth_labels(gt_dir: Path, labels: str = "auto") -> LabelSpace:
    """The label space of a ground-truth folder: `labels`, or from its file names."""
    if labels != "auto":
        return get_label_space(labels)
    cityscapes = LABEL_SPACES["cityscapes"]
    idd = LABEL_SPACES["idd_level3"]
    if next(gt_dir.rglob(f"*{cityscapes.label_suffix}"), None) is not None and (
        next(gt_dir.rglob(f"*{idd.label_suffix}"), None) is None
    ):
        return cityscapes
    return idd


def find_labels(folder: str | Path, what: str, suffix: str | None = None) -> list[Path]:
    """The label PNGs under a folder, sorted.

    In a folder holding ground truth named with `suffix` (`*_gtFine_labellevel3Ids.png`,
    `*_gtFine_labelIds.png`), only those: the datasets' tools also leave colour and other
    PNGs beside them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such {what} folder")
    pngs = sorted(folder.rglob("*.png"))
    if not pngs:
        raise DataError(f"{folder}: no {what} PNGs found")
    named = [p for p in pngs if suffix and p.name.endswith(suffix)]
    return named or pngs


def _folders(path: Path, root: Path) -> tuple[str, ...]:
    return path.parent.relative_to(root).parts


def _tail_matches(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True if the shorter folder path is the tail of the longer (`()` matches any)."""
    n = min(len(a), len(b))
    return a[len(a) - n :] == b[len(b) - n :]


def match_files(
    pred_dir: str | Path, gt_dir: str | Path, gt_suffix: str | None = None
) -> list[tuple[Path, Path]]:
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
    ground_truths = find_labels(gt_dir, "ground-truth", gt_suffix)
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


def pair_confusion(gt_path: Path, pred_path: Path, label_space: LabelSpace) -> np.ndarray:
    """[K, K + 1] int64 confusion matrix of one image pair at the label's resolution."""
    label = sources.read_label(str(gt_path), label_space)
    stored = sources.decode_ids(sources.read_bytes(pred_path), str(pred_path))
    prediction = label_space.prediction_train_ids(resize_nearest(stored, label.shape))
    return np.asarray(
        metrics.confusion_matrix(label, prediction, label_space.num_classes), np.int64
    )


def score_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    labels: str = "auto",
    show_progress: bool = False,
) -> dict:
    """The official metrics of the predictions under `pred_dir` against `gt_dir`.

    Returns:
      The dict of `metrics.metrics_from_confusion` (NaN for a class absent from both
      ground truth and predictions), "images": n, "labels": the label space's name.
    """
    label_space = ground_truth_labels(Path(gt_dir), labels)
    pairs = match_files(pred_dir, gt_dir, label_space.label_suffix)
    k = label_space.num_classes
    confusion = np.zeros((k, k + 1), np.int64)
    for gt, pred in tqdm(pairs, unit="image", file=sys.stderr, disable=not show_progress):
        confusion += pair_confusion(gt, pred, label_space)
    scores = metrics.metrics_from_confusion(confusion, label_space.class_names)
    return {**scores, "images": len(pairs), "labels": label_space.name}


def format_scores(scores: dict) -> str:
    """PA, mIoU, mean accuracy, fwIoU, the headline classes, then every class's IoU, one
    per line."""
    label_space = get_label_space(scores["labels"])
    width = max(27, max(len(n) for n in label_space.class_names) + 6)
    lines = [
        f"{'images':<{width}}{scores['images']}",
        f"{'pixel accuracy':<{width}}{scores['pixel_accuracy']:.4f}",
        f"{'mean IoU':<{width}}{scores['mean_iou']:.4f}",
        f"{'mean accuracy':<{width}}{scores['mean_accuracy']:.4f}",
        f"{'frequency-weighted IoU':<{width}}{scores['fw_iou']:.4f}",
    ]
    lines += [f"{name:<{width}}{scores['iou'][name]:.4f}" for name in label_space.headline]
    lines.append("all classes (nan: absent from ground truth and predictions)")
    lines += [
        f"{f'  {i:>2} {name}':<{width}}{scores['iou'][name]:.4f}"
        for i, name in enumerate(label_space.class_names)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(
        "jaxseg.score",
        "Score predicted label PNGs against ground truth (IDD's or Cityscapes' metrics).",
    )
    parser.add_argument("--pred", required=True, help="folder of predicted id PNGs")
    parser.add_argument("--gt", required=True, help="folder of ground-truth label PNGs")
    parser.add_argument(
        "--labels",
        default="auto",
        help=f"label space: auto (from the ground truth's names), {', '.join(LABEL_SPACES)}",
    )
    parser.add_argument("--json", help="write the results record to this file")
    parser.add_argument("--split", help="split name for the JSON (default: the gt folder's)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        scores = score_folders(
            args.pred, args.gt, labels=args.labels, show_progress=sys.stderr.isatty()
        )
        print(format_scores(scores))
        if args.json:
            record = results.record(
                experiment="score",
                split=args.split or Path(args.gt).resolve().name,
                data=str(Path(args.gt).resolve()),
                label_space=get_label_space(scores["labels"]),
                metrics=scores,
                images=scores["images"],
            )
            results.write(args.json, record)


if __name__ == "__main__":
    main()
