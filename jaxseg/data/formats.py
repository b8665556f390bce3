"""The one registry of data formats: which format a data path is, and how to open its splits.

Each `DataFormat` detects its layout and opens a split as a source that carries its
`LabelSpace`. Formats, in the order they are tried:

- ``cityscapes``: `leftImg8bit/` and `gtFine/**/*_gtFine_labelIds.png` (label space
  ``cityscapes``).
- ``idd``: an IDD root, `leftImg8bit/` and `gtFine/` with level-3 label PNGs (either part;
  also the synthetic data). Label spaces ``idd_level3`` (default), ``idd_level2``,
  ``idd_level1``.
- ``csv``: a folder holding `{split}.csv` pair lists, or one CSV file; the label space
  follows the label files' names (`*_gtFine_labelIds.png`: Cityscapes, else IDD's levels).
- ``tfds``: a TFDS array_record dataset written by `jaxseg.data.prepare --tfds` (IDD's
  levels); TFDS is imported only to open one.

Adding a format is one `DataFormat` in `FORMATS` (see docs/recipes.md).
"""

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxseg.data import sources, synthetic
from jaxseg.data.labels import LabelSpace, get_label_space
from jaxseg.errors import ConfigError, DataError

IDD_LEVELS = ("idd_level3", "idd_level2", "idd_level1")
CITYSCAPES_LABEL = "_gtFine_labelIds.png"
IDD_LABEL = "_gtFine_labellevel3Ids.png"


@dataclasses.dataclass(frozen=True)
class DataFormat:
    """How to recognise and read one layout of data."""

    name: str
    detect: Callable[[Path], bool]  # True if a path holds data of this format.
    # (path, split, label space, require_labels) -> a source of that split.
    open_split: Callable[[Path, str, LabelSpace, bool], sources.Source]
    label_spaces: Callable[[Path], tuple[str, ...]]  # Those that fit; the first is default.


def _has_file(folder: Path, pattern: str) -> bool:
    return next(folder.glob(pattern), None) is not None


def _is_cityscapes(path: Path) -> bool:
    gt = path / "gtFine"
    if not (path / "leftImg8bit").is_dir() or not gt.is_dir():
        return False
    return _has_file(gt, f"*/*/*{CITYSCAPES_LABEL}") and not _has_file(gt, f"*/*/*{IDD_LABEL}")


def _is_idd(path: Path) -> bool:
    return (path / "leftImg8bit").is_dir()


def _csv_files(path: Path) -> list[Path]:
    if path.is_file() and path.suffix == ".csv":
        return [path]
    return [path / f"{split}.csv" for split in sources.SPLITS if (path / f"{split}.csv").is_file()]


def _csv_label_spaces(path: Path) -> tuple[str, ...]:
    with _csv_files(path)[0].open(newline="", encoding="utf-8", errors="replace") as f:
        first = next((row for row in csv.reader(f) if len(row) > 1), None)
    if first is not None and first[1].strip().endswith(CITYSCAPES_LABEL):
        return ("cityscapes",)
    return IDD_LEVELS


def _open_folder(path: Path, split: str, space: LabelSpace, require: bool) -> sources.Source:
    return sources.folder_source(path, split, space, require_labels=require)


def _open_csv(path: Path, split: str, space: LabelSpace, require: bool) -> sources.Source:
    csv_path = path if path.is_file() else path / f"{split}.csv"
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such CSV file (the {split} split's pair list)")
    return sources.csv_source(csv_path, space, require_labels=require)


def _open_tfds(path: Path, split: str, space: LabelSpace, require: bool) -> sources.Source:
    # Imported here: TFDS is an optional extra and slow to import.
    from jaxseg.data import tfds_idd

    return tfds_idd.tfds_source(path, split, space, require_labels=require)


FORMATS: tuple[DataFormat, ...] = (
    DataFormat("cityscapes", _is_cityscapes, _open_folder, lambda _: ("cityscapes",)),
    DataFormat("idd", _is_idd, _open_folder, lambda _: IDD_LEVELS),
    DataFormat("csv", lambda p: bool(_csv_files(p)), _open_csv, _csv_label_spaces),
    DataFormat("tfds", lambda p: p.is_dir() and bool(sources.tfds_info_files(p)), _open_tfds,
               lambda _: IDD_LEVELS),
)  # fmt: skip


def detect_format(path: str | Path) -> DataFormat:
    """The format of a data path; DataError when it is none of `FORMATS`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data folder")
    for data_format in FORMATS:
        if data_format.detect(path):
            return data_format
    raise DataError(
        f"{path}: not a dataset (expected an IDD or Cityscapes root with leftImg8bit/, "
        "a folder of train/val/test.csv pair lists, or a TFDS data directory)"
    )


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data path, its format and the label space its labels are read in."""

    path: Path
    format: DataFormat
    label_space: LabelSpace

    def split(self, name: str, *, require_labels: bool = True) -> sources.Source:
        """The source of split `name` ("train", "val", "test")."""
        return self.format.open_split(self.path, name, self.label_space, require_labels)


def open_dataset(path: str | Path, labels: str = "auto") -> Dataset:
    """Opens a dataset, reading its labels in label space `labels` ("auto": the format's
    default).

    Raises:
      DataError: the path is no dataset.
      ConfigError: `labels` is unknown or does not fit the format (e.g. IDD level 1 on
        Cityscapes).
    """
    path = Path(path)
    data_format = detect_format(path)
    valid = data_format.label_spaces(path)
    name = valid[0] if labels == "auto" else labels
    space = get_label_space(name)
    if name not in valid:
        raise ConfigError(
            f"data.labels={name!r} does not fit {data_format.name} data at {path}; "
            f"valid: auto, {', '.join(valid)}"
        )
    return Dataset(path, data_format, space)


def open_split(
    path: str | Path, split: str, *, labels: str = "auto", require_labels: bool = True
) -> sources.Source:
    """Opens one split of the dataset at `path`; see `open_dataset`."""
    return open_dataset(path, labels).split(split, require_labels=require_labels)


def config_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """The dataset of a run's config: `data.source` read in label space `data.labels`;
    "synthetic" is generated into the cache on first use (`config.synthetic`)."""
    source = config.data.source
    if source == "synthetic":
        source = synthetic.ensure_synthetic(config.synthetic.to_dict())
    return open_dataset(source, config.data.labels)
