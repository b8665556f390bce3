"""Pixel counts per class over a split, as the seed counted them for its class weights.

`python -m jaxseg.data.stats --data PATH --split train [--out FILE]` writes
`{"counts": [27 ints], "classes": [27 names], "images": N}`: the 26 level-3 classes, then
void (255, or 26 in IDD's evaluation files) last as the seed's "unlabeled". Labels are
read one at a time, so memory stays bounded whatever the split's size.
"""

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxseg import cli
from jaxseg.classes import CLASS_NAMES, NUM_CLASSES
from jaxseg.data import sources
from jaxseg.data.prepare import write_atomic

COUNT_NAMES = (*CLASS_NAMES, "unlabeled")


def label_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes + 1] int64 pixel counts of one label map; every id >= num_classes is void.

    The one place that counts label pixels per class: the counts of several maps add up, and
    void (255, or IDD's 26 in level-3 evaluation files) is the last entry.

    Args:
      label: [H, W] non-negative integer ids (train ids or level-3 ids).
      num_classes: K, the number of classes; ids >= K count as void.
    """
    ids = np.minimum(np.asarray(label).ravel().astype(np.intp), num_classes)
    return np.bincount(ids, minlength=num_classes + 1).astype(np.int64)


def pixel_counts(source: sources.Source, *, progress: bool = False) -> np.ndarray:
    """[NUM_CLASSES + 1] int64 pixel counts of every label of a source, void last.

    Args:
      source: a source from `sources.open_split`; every example must have a label.
      progress: show a progress bar on stderr.
    """
    counts = np.zeros(NUM_CLASSES + 1, np.int64)
    for index in tqdm(range(len(source)), unit="image", file=sys.stderr, disable=not progress):
        counts += label_counts(sources.load_label(source[index]), NUM_CLASSES)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Count label pixels per class over a dataset split.")
    parser.add_argument("--data", required=True, help="IDD root, CSV folder or TFDS data dir")
    parser.add_argument("--split", default="train", help="split to count (default: train)")
    parser.add_argument("--out", help="JSON file to write (default: print it)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        source = sources.open_split(args.data, args.split)
        counts = pixel_counts(source, progress=sys.stderr.isatty())  # Bar on terminals only.
        text = json.dumps(
            {"counts": counts.tolist(), "classes": list(COUNT_NAMES), "images": len(source)}
        )
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_atomic((text + "\n").encode(), Path(args.out))
            print(f"wrote pixel counts of {len(source)} images to {args.out}")
        else:
            print(text)


if __name__ == "__main__":
    main()
