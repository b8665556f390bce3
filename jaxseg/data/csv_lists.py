"""The course's CSV pair lists (train.csv / val.csv / test.csv) from an IDD root.

`python -m jaxseg.data.csv_lists --idd-root DIR --out DIR [--seed S --val-fraction F
--test-fraction F --splits train val]` pools the labelled images of the root's splits and
splits them at random with the seed. The defaults reproduce the course's proportions: it
split IDD Part II's 7034 training pairs into 4019 / 2010 / 1005 (4:2:1), which
`--splits train` gives. Rows are `image,label` paths relative to the output folder (no
header), the format `sources.csv_source` and `open_split(OUT, split)` read.
"""

import csv
import io
import os
from pathlib import Path

import numpy as np

from jaxseg import cli
from jaxseg.data import formats, sources
from jaxseg.errors import DataError
from jaxseg.files import write_atomic

VAL_FRACTION = 2 / 7
TEST_FRACTION = 1 / 7


def labelled_examples(root: str | Path, splits: tuple[str, ...]) -> list[sources.Example]:
    """Every labelled example of the given splits of a dataset root (IDD or Cityscapes),
    in folder order."""
    dataset = formats.open_dataset(root)
    return [e for split in splits for e in dataset.split(split).examples]


def split_examples(
    examples: list[sources.Example], *, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[sources.Example]]:
    """Shuffles with `seed` and cuts {"train", "val", "test"} by fractions (rounded half up).

    A split with fraction 0 is left out; one with a positive fraction that rounds to no
    example is an error.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"fractions val {val_fraction} + test {test_fraction}: each in [0, 1), sum < 1"
        )
    order = np.random.default_rng(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    n_test = int(len(examples) * test_fraction + 0.5)
    n_val = int(len(examples) * val_fraction + 0.5)
    parts = {
        "train": (1.0, shuffled[n_test + n_val :]),
        "val": (val_fraction, shuffled[n_test : n_test + n_val]),
        "test": (test_fraction, shuffled[:n_test]),
    }
    for name, (fraction, part) in parts.items():
        if fraction > 0 and not part:
            raise DataError(f"{len(examples)} labelled images leave the {name} split empty")
    return {name: part for name, (fraction, part) in parts.items() if fraction > 0}


def csv_text(examples: list[sources.Example], out_dir: Path, *, absolute: bool = False) -> str:
    """`image,label` rows, paths relative to `out_dir` unless `absolute`."""

    def path(p: str) -> str:
        return str(Path(p).resolve()) if absolute else os.path.relpath(p, out_dir)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows((path(e.image_path), path(e.label_path)) for e in examples)
    return buffer.getvalue()


def write_csv_lists(
    root: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    splits: tuple[str, ...] = ("train", "val"),
    absolute: bool = False,
) -> dict[str, int]:
    """Writes `{train,val,test}.csv` pair lists of an IDD root's labelled images.

    Args:
      root: IDD root whose level-3 labels exist (`jaxseg.data.prepare`).
      out_dir: folder for the CSV files (created if needed).
      seed: shuffling seed; the same seed and data give the same files.
      val_fraction: share of the pooled images in val.csv.
      test_fraction: share in test.csv.
      splits: which of the root's splits to pool.
      absolute: write absolute paths instead of paths relative to `out_dir`.

    Returns:
      {split: number of rows written}.
    """
    examples = labelled_examples(root, splits)
    parts = split_examples(
        examples, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val", "test"):
        if name in parts:
            text = csv_text(parts[name], out_dir, absolute=absolute)
            write_atomic(text.encode(), out_dir / f"{name}.csv")
        else:  # A list from an earlier run would not match this split.
            (out_dir / f"{name}.csv").unlink(missing_ok=True)
    return {name: len(part) for name, part in parts.items()}


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(
        "jaxseg.data.csv_lists",
        "Write the course's train/val/test CSV pair lists from an IDD root.",
    )
    parser.add_argument("--idd-root", required=True, help="IDD root with level-3 labels")
    parser.add_argument("--out", required=True, help="folder for train.csv, val.csv, test.csv")
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default: 0)")
    parser.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="share in val (default: 2/7)"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=TEST_FRACTION, help="share in test (default: 1/7)"
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val"],
        choices=sources.SPLITS,
        help="splits of the root to pool (default: train val; the course used train)",
    )
    parser.add_argument("--absolute", action="store_true", help="write absolute paths")
    args = parser.parse_args(argv)
    with cli.user_errors():
        counts = write_csv_lists(
            args.idd_root,
            args.out,
            seed=args.seed,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            splits=tuple(args.splits),
            absolute=args.absolute,
        )
        print(", ".join(f"{name}.csv: {n} pairs" for name, n in counts.items()))


if __name__ == "__main__":
    main()
