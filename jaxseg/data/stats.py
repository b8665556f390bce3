"""Pixel counts per class over a split, as the study counted them for its class weights.

`python -m jaxseg.data.stats --data PATH --split train [--labels NAME] [--out FILE]` writes
`{"counts": [K + 1 ints], "classes": [K + 1 names], "images": N}`: the K classes of the
label space, then void last ("unlabeled"). Labels are read one at a time, so memory stays
bounded whatever the split's size.
"""

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxseg import cli
from jaxseg.data import formats, sources
from jaxseg.data.labels import label_counts
from jaxseg.files import write_atomic


def pixel_counts(source: sources.Source, *, progress: bool = False) -> np.ndarray:
    """[K + 1] int64 pixel counts of every label of a source, void last.

    Args:
      source: a source from `formats.open_split`; every example must have a label.
      progress: show a progress bar on stderr.
    """
    space = source.label_space
    counts = np.zeros(space.num_classes + 1, np.int64)
    for index in tqdm(range(len(source)), unit="image", file=sys.stderr, disable=not progress):
        counts += label_counts(sources.load_label(source[index], space), space.num_classes)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.data.stats", "Count label pixels per class over a dataset split.")
    parser.add_argument(
        "--data", required=True, help="IDD or Cityscapes root, CSV folder or TFDS data dir"
    )
    parser.add_argument("--split", default="train", help="split to count (default: train)")
    parser.add_argument("--labels", default="auto", help="label space (default: the data's)")
    parser.add_argument("--out", help="JSON file to write (default: print it)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        source = formats.open_split(args.data, args.split, labels=args.labels)
        counts = pixel_counts(source, progress=sys.stderr.isatty())  # Bar on terminals only.
        names = [*source.label_space.class_names, "unlabeled"]
        text = json.dumps({"counts": counts.tolist(), "classes": names, "images": len(source)})
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_atomic((text + "\n").encode(), Path(args.out))
            print(f"wrote pixel counts of {len(source)} images to {args.out}")
        else:
            print(text)


if __name__ == "__main__":
    main()
