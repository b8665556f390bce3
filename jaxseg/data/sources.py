"""Random-access sources of (image, label) pairs: IDD-layout folders, CSV pair lists and TFDS.

A source is a sequence of records: `Example` (file paths) for folders and CSV lists,
`EncodedExample` (encoded bytes) for TFDS array_record datasets. `load_example` decodes
either kind into the same arrays, so the pipeline reads every source the same way. Records
and sources are cheap to pickle, so grain worker processes can run them.
"""

import csv
import dataclasses
import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from jaxseg.classes import NUM_CLASSES, VOID
from jaxseg.errors import DataError

IMAGE_SUFFIXES = ("_leftImg8bit.png", "_leftImg8bit.jpg")
LABEL_SUFFIX = "_gtFine_labellevel3Ids.png"
SPLITS = ("train", "val", "test")
# A label image is one id per pixel: grey levels, or palette indices.
LABEL_MODES = ("L", "P")


@dataclasses.dataclass(frozen=True)
class Example:
    """One image and its (optional) level-3 label PNG."""

    image_path: str
    label_path: str | None
    name: str  # File stem without IDD suffixes, e.g. "frame0029"; unique within a split.


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """One image and its (optional) level-3 label, as encoded file bytes (TFDS records)."""

    image: bytes  # JPEG or PNG file contents.
    label: bytes | None  # PNG file contents, None for unlabelled images.
    name: str
    origin: str  # Where the record lives, for error messages.

    @property
    def label_path(self) -> str | None:
        """Where the label lives (None if unlabelled), as `Example.label_path` tells."""
        return None if self.label is None else f"{self.origin} label"


class Source(Protocol):
    """What the pipeline needs of a source: random access to records and a description."""

    description: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> "Example | EncodedExample": ...


class ExampleSource:
    """A grain random-access source over a fixed list of examples."""

    def __init__(self, examples: list[Example], description: str):
        if not examples:
            raise DataError(f"{description}: no examples found")
        self.examples = examples
        self.description = description

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    def __repr__(self) -> str:
        return f"ExampleSource({self.description}, {len(self)} examples)"


def strip_suffix(name: str, suffixes: Sequence[str]) -> str:
    """`name` without the first of `suffixes` that it ends with (unchanged if none)."""
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _unique_names(stems: list[str], relative_stems: list[str]) -> list[str]:
    """File stems as names, except that stems occurring twice keep their folder.

    IDD Part II restarts frame numbers in every sequence folder (`201/frame0029`,
    `202/frame0029`), so a bare stem is not always unique within a split.
    """
    counts = Counter(stems)
    return [
        stem if counts[stem] == 1 else relative
        for stem, relative in zip(stems, relative_stems, strict=True)
    ]


def idd_folder_source(
    root: str | Path, split: str, *, require_labels: bool = True
) -> ExampleSource:
    """Pairs `leftImg8bit/{split}/{seq}/{id}_leftImg8bit.{png,jpg}` with their label PNGs.

    Args:
      root: IDD root holding `leftImg8bit/` and `gtFine/` (Part I png or Part II jpg).
      split: "train", "val" or "test".
      require_labels: if True, an image without `gtFine/.../{id}_gtFine_labellevel3Ids.png`
        is an error (run `python -m jaxseg.data.prepare` to make them from the polygons).

    Returns:
      The split's examples sorted by path; image and label sizes are checked on decoding.
    """
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: no such folder (expected an IDD root with leftImg8bit/)")
    image_paths = sorted(p for p in image_dir.rglob("*") if p.name.endswith(IMAGE_SUFFIXES))
    relative_stems = [
        strip_suffix(p.relative_to(image_dir).as_posix(), IMAGE_SUFFIXES) for p in image_paths
    ]
    duplicates = [stem for stem, n in Counter(relative_stems).items() if n > 1]
    if duplicates:
        raise DataError(f"{image_dir / duplicates[0]}: both a .png and a .jpg image")
    stems = [strip_suffix(p.name, IMAGE_SUFFIXES) for p in image_paths]
    examples = []
    for image_path, relative, name in zip(
        image_paths, relative_stems, _unique_names(stems, relative_stems), strict=True
    ):
        label_path = root / "gtFine" / split / f"{relative}{LABEL_SUFFIX}"
        if not label_path.is_file():
            if require_labels:
                raise DataError(
                    f"{image_path}: no label {label_path} "
                    "(make level-3 labels with `python -m jaxseg.data.prepare`)"
                )
            label_path = None
        examples.append(Example(str(image_path), label_path and str(label_path), name))
    return ExampleSource(examples, f"{image_dir}")


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty rows of a CSV file with their line numbers; unreadable files are DataErrors."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [(n, [cell.strip() for cell in row]) for n, row in enumerate(csv.reader(f), 1)]
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise DataError(f"{csv_path}: cannot read CSV ({e})") from None
    return [(n, [cell for cell in row if cell]) for n, row in rows if any(row)]


def csv_source(csv_path: str | Path, *, require_labels: bool = True) -> ExampleSource:
    """Reads the course's pair lists: two columns `image,label`, no header.

    Relative paths are resolved against the CSV file's folder. A one-column row is allowed
    only when labels are not required (test lists).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such CSV file")
    examples = []
    for line_number, row in _csv_rows(csv_path):
        if len(row) > 2 or (len(row) == 1 and require_labels):
            raise DataError(
                f"{csv_path}:{line_number}: expected 2 columns (image,label), got {len(row)}"
            )
        paths = [Path(p) if Path(p).is_absolute() else csv_path.parent / p for p in row]
        for path in paths:
            if not path.is_file():
                raise DataError(f"{csv_path}:{line_number}: no such file {path}")
        image_path = paths[0]
        label_path = str(paths[1]) if len(paths) == 2 else None
        name = strip_suffix(image_path.name, IMAGE_SUFFIXES)
        if name == image_path.name:
            name = image_path.stem
        examples.append(Example(str(image_path), label_path, name))
    qualified = [f"{Path(e.image_path).parent.name}/{e.name}" for e in examples]
    names = _unique_names([e.name for e in examples], qualified)
    examples = [dataclasses.replace(e, name=n) for e, n in zip(examples, names, strict=True)]
    return ExampleSource(examples, str(csv_path))


def open_split(data: str | Path, split: str, *, require_labels: bool = True) -> Source:
    """Opens a split of a dataset: an IDD root, CSV pair lists, or a TFDS data directory.

    Args:
      data: an IDD root (`leftImg8bit/`, `gtFine/`), a folder holding `{split}.csv`, a CSV
        file, or a TFDS data directory written by `jaxseg.data.prepare --tfds` (any folder
        with exactly one `dataset_info.json` at most three levels down).
      split: "train", "val" or "test".
      require_labels: if True, every example must have a label.
    """
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such data folder")
    if (data / "leftImg8bit").is_dir():
        return idd_folder_source(data, split, require_labels=require_labels)
    if (data / f"{split}.csv").is_file():
        return csv_source(data / f"{split}.csv", require_labels=require_labels)
    if data.is_file() and data.suffix == ".csv":
        return csv_source(data, require_labels=require_labels)
    if data.is_dir() and any(tfds_info_files(data)):
        # Imported here: TFDS is an optional extra and slow to import.
        from jaxseg.data import tfds_idd

        return tfds_idd.tfds_source(data, split, require_labels=require_labels)
    raise DataError(
        f"{data}: neither an IDD root (leftImg8bit/), a folder with {split}.csv, "
        "nor a TFDS data directory"
    )


def tfds_info_files(data: Path) -> list[Path]:
    """`dataset_info.json` files of TFDS datasets in a folder, down to three levels."""
    return sorted(p for depth in range(4) for p in data.glob("*/" * depth + "dataset_info.json"))


def _decode(data: bytes, origin: str, what: str, *, reduce: int = 1) -> Image.Image:
    """Opens and fully decodes image bytes (Pillow decodes lazily, so force it here).

    `reduce` > 1 lets JPEGs decode at 1/reduce scale, which still reads the whole file.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if reduce > 1:
            image.draft("RGB", (image.width // reduce, image.height // reduce))
        image.load()
    # Pillow's decoders raise many exception types on malformed files (OSError,
    # SyntaxError, struct.error, DecompressionBombError, ...): all mean a bad file.
    except Exception as e:
        raise DataError(f"{origin}: cannot decode {what} ({type(e).__name__}: {e})") from None
    return image


def read_bytes(path: str | Path) -> bytes:
    """The contents of a file; a missing or unreadable file raises DataError."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def decode_image(data: bytes, origin: str) -> np.ndarray:
    """Decodes JPEG/PNG bytes to [H, W, 3] uint8 RGB; corrupt data raises DataError.

    Args:
      data: encoded image file contents.
      origin: the file or record the bytes come from, for error messages.
    """
    image = _decode(data, origin, "image")
    try:
        return np.asarray(image.convert("RGB"))
    except Exception as e:  # An exotic mode Pillow cannot convert.
        raise DataError(f"{origin}: cannot convert image mode {image.mode} to RGB ({e})") from None


def image_size(data: bytes | str, origin: str) -> tuple[int, int]:
    """(height, width) of encoded image bytes or an image file, from its header only."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            width, height = image.size
    except Exception as e:  # As in `_decode`: any failure means a bad file.
        raise DataError(f"{origin}: cannot decode image ({type(e).__name__}: {e})") from None
    return height, width


def verify_image(data: bytes, origin: str) -> tuple[int, int]:
    """Checks that image bytes decode completely; returns the image's (height, width).

    Cheaper than `decode_image` for JPEGs (decoded at 1/8 scale), as thorough for
    truncation and corruption.
    """
    size = image_size(data, origin)
    _decode(data, origin, "image", reduce=8)
    return size


def read_image(path: str) -> np.ndarray:
    """Decodes an image file to [H, W, 3] uint8 RGB; corrupt files raise DataError."""
    return decode_image(read_bytes(path), str(path))


def decode_label(
    data: bytes, origin: str, expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decodes level-3 id PNG bytes to [H, W] uint8 and checks mode, size and ids.

    Args:
      data: PNG file contents (mode L or P, one id per pixel).
      origin: the file or record the bytes come from, for error messages.
      expected_size: (height, width) the label must have (its image's size).

    Returns:
      Ids 0-25, and 255 for void (IDD's evaluation also stores void as 26: mapped to 255).
    """
    image = _decode(data, origin, "label")
    if image.format != "PNG":
        raise DataError(f"{origin}: label is {image.format}, expected a PNG (lossless ids)")
    if image.mode not in LABEL_MODES:
        raise DataError(f"{origin}: label PNG has mode {image.mode}, expected L (ids)")
    label = np.asarray(image)
    if expected_size is not None and label.shape != tuple(expected_size):
        raise DataError(f"{origin}: label size {label.shape} != image size {tuple(expected_size)}")
    bad = (label > NUM_CLASSES) & (label != VOID)
    if bad.any():
        raise DataError(
            f"{origin}: label id {int(label[bad][0])} outside 0-{NUM_CLASSES - 1}/{VOID}"
        )
    return np.where(label == NUM_CLASSES, VOID, label).astype(np.uint8)


def read_label(path: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes a level-3 id PNG file to [H, W] uint8; see `decode_label`."""
    return decode_label(read_bytes(path), str(path), expected_size)


def load_example(example: Example | EncodedExample) -> dict:
    """Decodes a record to {"image": [H,W,3] uint8, "label": [H,W] uint8, "name": str}.

    Both record kinds decode to the same arrays for the same files. Examples without a
    label get an all-void label.
    """
    if isinstance(example, Example):
        image = read_image(example.image_path)
        label_data = None if example.label_path is None else read_bytes(example.label_path)
        label_origin = example.label_path
    else:
        image = decode_image(example.image, f"{example.origin} image")
        label_data = example.label
        label_origin = example.label_path
    if label_data is None:
        label = np.full(image.shape[:2], VOID, np.uint8)
    else:
        label = decode_label(label_data, label_origin, image.shape[:2])
    return {"image": image, "label": label, "name": example.name}


def load_label(example: Example | EncodedExample) -> np.ndarray:
    """Decodes only the label of a record ([H, W] uint8), checked against its image's size.

    Only the image's header is read, so this is much cheaper than `load_example`.
    Unlabelled records are errors.
    """
    if isinstance(example, Example):
        if example.label_path is None:
            raise DataError(f"{example.image_path}: no label")
        size = image_size(example.image_path, example.image_path)
        return read_label(example.label_path, size)
    if example.label is None:
        raise DataError(f"{example.origin}: no label")
    size = image_size(example.image, f"{example.origin} image")
    return decode_label(example.label, example.label_path, size)
