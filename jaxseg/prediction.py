"""Batched prediction on files, what `jaxseg.predict` runs: images (a file, a folder searched
recursively, or a CSV list) or a video, decoded by a background thread while the device
works on the previous batch, with a progress bar (images/s, ETA).

Per image it writes `{name}_pred.png` (the label space's ids, e.g. IDD level-3 ids or
Cityscapes labelIds, that `jaxseg.score` reads), `{name}_color.png` (class colours) and
`{name}_overlay.jpg` (colours blended over the image); a video gives `{stem}_overlay.mp4`
with the same frame count and rate, and optionally `{stem}/{frame:06d}_pred.png` per frame.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from jaxseg import progress, report
from jaxseg.data import sources
from jaxseg.data.labels import LabelSpace
from jaxseg.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class Predictor(Protocol):
    """What prediction needs of a model: `jaxseg.Segmenter` or an exported artifact."""

    label_space: LabelSpace

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 images [B, H, W, 3] -> train ids [B, H, W] uint8, 255 = void."""
        ...


def _csv_images(csv_path: Path) -> list[tuple[Path, Path]]:
    # The image column of a pair list (`image[,label]`), as `jaxseg.data` reads them.
    source = sources.csv_source(csv_path, None, require_labels=False)
    images = [Path(e.image_path) for e in source.examples]
    return [
        (p, p.relative_to(csv_path.parent) if p.is_relative_to(csv_path.parent) else Path(p.name))
        for p in images
    ]


def find_images(path: str | Path) -> list[tuple[Path, Path]]:
    """(image, output path relative to the output folder) for an image file, every image
    under a folder (recursively), or the images of a CSV list.

    Relative paths keep the sequence folders, whose frame names repeat across folders.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _csv_images(path)
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise DataError(f"{path}: no such image file, folder or CSV list")
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"{path}: no .png/.jpg images found")
    return [(p, p.relative_to(path)) for p in images]


def same_size_batches(items: Iterable, image_of: Callable, batch_size: int) -> Iterator[list]:
    """Consecutive items in batches of up to `batch_size` images of one size."""
    batch = []
    for item in items:
        if batch and (len(batch) == batch_size or image_of(item).shape != image_of(batch[0]).shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def in_background(items: Iterator, depth: int = 2) -> Iterator:
    """`items` produced by a thread, up to `depth` ahead: decoding overlaps the device
    (which releases the GIL) and the writing of the previous batch's files."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in items:
                ready.put(item)
        except BaseException as e:  # Re-raised in the consumer, which names the file.
            ready.put(e)
        ready.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := ready.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def write_ids(ids: np.ndarray, path: Path, label_space: LabelSpace) -> Path:
    """Train ids [H, W] as a PNG of the label space's output ids (void: its void id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label_space.to_output_ids(ids)).save(path)
    return path


def write_prediction(
    image: np.ndarray, ids: np.ndarray, target: Path, label_space: LabelSpace
) -> Path:
    """Writes `{target}_pred.png`, `{target}_color.png` and `{target}_overlay.jpg`."""
    pred = write_ids(ids, target.parent / f"{target.name}_pred.png", label_space)
    Image.fromarray(label_space.colorize(ids)).save(target.parent / f"{target.name}_color.png")
    overlay = report.blend(image, ids, label_space)
    Image.fromarray(overlay).save(target.parent / f"{target.name}_overlay.jpg", quality=90)
    return pred


def output_name(relative: Path) -> Path:
    """The output stem of an input's relative path (Cityscapes' `_leftImg8bit` dropped)."""
    return relative.parent / relative.name.rsplit(".", 1)[0].removesuffix("_leftImg8bit")


def predict_images(
    predictor: Predictor,
    images: list[tuple[Path, Path]],
    out_dir: str | Path,
    batch_size: int = 4,
) -> list[Path]:
    """Predicts `images` (from `find_images`) in batches and writes their files under
    `out_dir`, mirroring the input's subfolders; returns the `_pred.png` paths."""
    out_dir = Path(out_dir)
    decoded = ((sources.read_image(str(path)), relative) for path, relative in images)
    batches = same_size_batches(decoded, lambda item: item[0], batch_size)
    bar = progress.Progress(len(images), 0, "predict", unit="img")
    written = []
    for batch in in_background(batches):
        ids = predictor.predict(np.stack([image for image, _ in batch]))
        for (image, relative), image_ids in zip(batch, ids, strict=True):
            target = out_dir / output_name(relative)
            written.append(write_prediction(image, image_ids, target, predictor.label_space))
        bar.update(len(batch))
    bar.close()
    return written
