"""Random-access sources of (image, label) pairs: dataset folders and CSV pair lists.

A source is a sequence of records that carries its `LabelSpace` (`source.label_space`):
`Example` (file paths) for folders and CSV lists, `EncodedExample` (encoded bytes) for TFDS
array_record datasets (`jaxseg.data.tfds_idd`). `load_example` decodes either kind into the
same arrays, label ids mapped to the label space's train ids, so the pipeline reads every
source the same way. Records and sources are cheap to pickle, so grain worker processes can
run them. `jaxseg.data.formats` finds which source a data folder needs.
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

from jaxseg.data.labels import VOID, LabelSpace
from jaxseg.errors import DataError

IMAGE_SUFFIXES = ("_leftImg8bit.png", "_leftImg8bit.jpg")
SPLITS = ("train", "val", "test")
# A label image is one id per pixel: grey levels, or palette indices.
LABEL_MODES = ("L", "P")


@dataclasses.dataclass(frozen=True)
class Example:
    """One image and its (optional) label PNG."""

    image_path: str
    label_path: str | None
    name: str  # File stem without IDD suffixes, e.g. "frame0029"; unique within a split.


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """One image and its (optional) label, as encoded file bytes (TFDS records)."""

    image: bytes  # JPEG or PNG file contents.
    label: bytes | None  # PNG file contents, None for unlabelled images.
    name: str
    origin: str  # Where the record lives, for error messages.

    @property
    def label_path(self) -> str | None:
        """Where the label lives (None if unlabelled), as `Example.label_path` tells."""
        return None if self.label is None else f"{self.origin} label"


class Source(Protocol):
    """What the pipeline needs of a source: random access to records, a description and
    the label space of its labels."""

    description: str
    label_space: LabelSpace

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> "Example | EncodedExample": ...


class ExampleSource:
    """A grain random-access source over a fixed list of examples."""

    def __init__(self, examples: list[Example], description: str, label_space: LabelSpace):
        if not examples:
            raise DataError(f"{description}: no examples found")
        self.examples = examples
        self.description = description
        self.label_space = label_space

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


def folder_source(
    root: str | Path, split: str, label_space: LabelSpace, *, require_labels: bool = True
) -> ExampleSource:
    """Pairs `leftImg8bit/{split}/{seq}/{id}_leftImg8bit.{png,jpg}` with their label PNGs
    `gtFine/{split}/{seq}/{id}{label_space.label_suffix}` (IDD and Cityscapes alike).

    Args:
      root: dataset root holding `leftImg8bit/` and `gtFine/` (IDD Part I png or Part II
        jpg, Cityscapes png).
      split: "train", "val" or "test".
      label_space: what the label files hold; its `label_suffix` names them.
      require_labels: if True, an image without a label file is an error (for IDD, run
        `python -m jaxseg.data.prepare` to make level-3 labels from the polygons).

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
        label_path = root / "gtFine" / split / f"{relative}{label_space.label_suffix}"
        if not label_path.is_file():
            if require_labels:
                hint = (
                    " (make level-3 labels with `python -m jaxseg.data.prepare`)"
                    if label_space.label_suffix.endswith("level3Ids.png")
                    else ""
                )
                raise DataError(f"{image_path}: no label {label_path}{hint}")
            label_path = None
        examples.append(Example(str(image_path), label_path and str(label_path), name))
    return ExampleSource(examples, f"{image_dir}", label_space)


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty rows of a CSV file with their line numbers; unreadable files are DataErrors."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [(n, [cell.strip() for cell in row]) for n, row in enumerate(csv.reader(f), 1)]
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise DataError(f"{csv_path}: cannot read CSV ({e})") from None
    return [(n, [cell for cell in row if cell]) for n, row in rows if any(row)]


def csv_source(
    csv_path: str | Path, label_space: LabelSpace, *, require_labels: bool = True
) -> ExampleSource:
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
    return ExampleSource(examples, str(csv_path), label_space)


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


def decode_ids(data: bytes, origin: str) -> np.ndarray:
    """The stored ids [H, W] uint8 of label or prediction PNG bytes, unmapped.

    Raises:
      DataError: not a PNG (ids must be lossless), not one id per pixel, or corrupt.
    """
    image = _decode(data, origin, "label")
    if image.format != "PNG":
        raise DataError(f"{origin}: label is {image.format}, expected a PNG (lossless ids)")
    if image.mode not in LABEL_MODES:
        raise DataError(f"{origin}: label PNG has mode {image.mode}, expected L (ids)")
    return np.asarray(image, np.uint8)


def decode_label(
    data: bytes,
    origin: str,
    label_space: LabelSpace,
    expected_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decodes label PNG bytes to train ids [H, W] uint8 and checks mode, size and ids.

    Args:
      data: PNG file contents (mode L or P, one stored id per pixel).
      origin: the file or record the bytes come from, for error messages.
      label_space: maps the stored ids to train ids (e.g. IDD level 3 keeps 0-25 and
        reads 26, IDD's evaluation's void, as 255); an id it does not define is an error.
      expected_size: (height, width) the label must have (its image's size).

    Returns:
      Train ids 0..K-1, and 255 for void.
    """
    label = decode_ids(data, origin)
    if expected_size is not None and label.shape != tuple(expected_size):
        raise DataError(f"{origin}: label size {label.shape} != image size {tuple(expected_size)}")
    return label_space.train_ids(label, origin)


def read_label(
    path: str, label_space: LabelSpace, expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decodes a label PNG file to train ids [H, W] uint8; see `decode_label`."""
    return decode_label(read_bytes(path), str(path), label_space, expected_size)


def load_example(example: Example | EncodedExample, label_space: LabelSpace) -> dict:
    """Decodes a record to {"image": [H,W,3] uint8, "label": [H,W] uint8, "name": str}.

    Both record kinds decode to the same arrays for the same files; labels hold train ids
    of `label_space`. Examples without a label get an all-void label.
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
        label = decode_label(label_data, label_origin, label_space, image.shape[:2])
    return {"image": image, "label": label, "name": example.name}


def load_label(example: Example | EncodedExample, label_space: LabelSpace) -> np.ndarray:
    """Decodes only the label of a record ([H, W] uint8), checked against its image's size.

    Only the image's header is read, so this is much cheaper than `load_example`.
    Unlabelled records are errors.
    """
    if isinstance(example, Example):
        if example.label_path is None:
            raise DataError(f"{example.image_path}: no label")
        size = image_size(example.image_path, example.image_path)
        return read_label(example.label_path, label_space, size)
    if example.label is None:
        raise DataError(f"{example.origin}: no label")
    size = image_size(example.image, f"{example.origin} image")
    return decode_label(example.label, example.label_path, label_space, size)
