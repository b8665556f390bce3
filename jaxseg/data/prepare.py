"""Level-3 label PNGs from IDD's polygon JSONs, as IDD's `json2labelImg.py` makes them.

`python -m jaxseg.data.prepare --idd-root DIR [--workers N] [--tfds OUT]` writes
`{id}_gtFine_labellevel3Ids.png` beside every `gtFine/**/{id}_gtFine_polygons.json`
(docs/datasets.md): objects drawn in file order onto void (255), later over earlier,
deleted objects and polygons of fewer than 3 points skipped, filled like PIL
`ImageDraw.polygon` (no outline). Outputs newer than their JSON are kept, so a second run
only redoes what changed; each PNG is written to a temporary file and renamed, so an
interrupted run leaves no partial file.
"""

import dataclasses
import io
import json
import math
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from jaxseg import cli
from jaxseg.data.labels import IDD_LEVEL3, VOID, idd_level3_id
from jaxseg.errors import DataError
from jaxseg.files import write_atomic

POLYGONS_SUFFIX = "_gtFine_polygons.json"
# IDD images are at most 1920x1080; a bound keeps a corrupt size from allocating gigabytes.
MAX_SIDE = 8192
# Far-outside vertices are clipped by PIL, but beyond int32 its rasteriser wraps around.
MAX_COORDINATE = 1e6

Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Annotation:
    """A parsed polygon JSON: the image size and what to draw, in drawing order."""

    width: int
    height: int
    shapes: tuple[tuple[int, tuple[Point, ...]], ...]  # (level-3 id, polygon vertices).


def _show(value: object, limit: int = 60) -> str:
    """A value's repr for an error message, cut short: hostile files can hold anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: object) -> bool:
    # JSON true/false arrive as bool, a subclass of int: not a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_size(data: dict, key: str, origin: str) -> int:
    if key not in data:
        raise DataError(f"{origin}: missing key {key!r} (not an IDD polygon JSON)")
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIDE:
        raise DataError(f"{origin}: {key} is {_show(value)}, expected an integer in 1-{MAX_SIDE}")
    return value


def _parse_point(point: object, where: str) -> Point:
    if not isinstance(point, list) or len(point) != 2 or not all(map(_is_number, point)):
        raise DataError(f"{where}: vertex {_show(point)} is not a pair of numbers [x, y]")
    for value in point:
        # Checked before float(): JSON integers can be too large to convert.
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{where}: vertex {_show(point)} is not finite")
        if abs(value) > MAX_COORDINATE:
            raise DataError(f"{where}: vertex {_show(point)} is beyond +-{MAX_COORDINATE:g}")
    return float(point[0]), float(point[1])


def _parse_object(obj: object, where: str) -> tuple[int, tuple[Point, ...]] | None:
    """(level-3 id, vertices) of one object, or None if it is not drawn."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: is {type(obj).__name__}, expected an object")
    deleted = obj.get("deleted", 0)
    if not isinstance(deleted, int):  # IDD writes 0/1; bool is an int too.
        raise DataError(f"{where}: 'deleted' is {_show(deleted)}, expected 0/1")
    if deleted:
        return None
    for key, kind in (("label", str), ("polygon", list)):
        if not isinstance(obj.get(key), kind):
            raise DataError(f"{where}: {key!r} missing or not a {kind.__name__}")
    label_id = idd_level3_id(obj["label"])
    if label_id is None:
        raise DataError(f"{where}: unknown label {_show(obj['label'])}")
    points = tuple(_parse_point(point, where) for point in obj["polygon"])
    return None if len(points) < 3 else (label_id, points)


def parse_annotation(data: object, origin: str) -> Annotation:
    """Validates a decoded IDD polygon JSON and maps its labels to level-3 ids.

    Args:
      data: the JSON value, `{"imgWidth", "imgHeight", "objects": [{"label", "polygon",
        "deleted"?}]}`.
      origin: the file it came from, for error messages.

    Raises:
      DataError: naming the file (and object) for a missing key, a wrong type, a vertex that
        is not a finite number, or an unknown label.
    """
    if not isinstance(data, dict):
        raise DataError(f"{origin}: top level is {type(data).__name__}, expected an object")
    width = _parse_size(data, "imgWidth", origin)
    height = _parse_size(data, "imgHeight", origin)
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise DataError(f"{origin}: 'objects' missing or not a list (not an IDD polygon JSON)")
    shapes = (_parse_object(obj, f"{origin}: object {i}") for i, obj in enumerate(objects))
    return Annotation(width, height, tuple(shape for shape in shapes if shape is not None))


def rasterize(annotation: Annotation) -> np.ndarray:
    """[imgHeight, imgWidth] uint8 level-3 ids: polygons filled in order onto void (255).

    PIL's fill rule is the reference (IDD's own tool uses it); vertices outside the image
    are clipped by it.
    """
    image = Image.new("L", (annotation.width, annotation.height), VOID)
    draw = ImageDraw.Draw(image)
    for label_id, points in annotation.shapes:
        draw.polygon(points, fill=label_id)
    return np.asarray(image)


def load_annotation(json_path: str | Path) -> Annotation:
    """Reads and validates one `*_gtFine_polygons.json`; see `parse_annotation`."""
    try:
        data = json.loads(Path(json_path).read_bytes())
    except OSError as e:
        raise DataError(f"{json_path}: cannot read ({e.strerror})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError.
        raise DataError(f"{json_path}: not valid JSON ({e})") from None
    return parse_annotation(data, str(json_path))


def label_path_for(json_path: str | Path) -> Path:
    """`.../{id}_gtFine_polygons.json` -> `.../{id}_gtFine_labellevel3Ids.png`."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.name[: -len(POLYGONS_SUFFIX)] + IDD_LEVEL3.label_suffix)


def encode_png(label: np.ndarray) -> bytes:
    """[H, W] uint8 ids -> PNG bytes (mode L)."""
    buffer = io.BytesIO()
    Image.fromarray(label).save(buffer, format="PNG")
    return buffer.getvalue()


def is_up_to_date(json_path: Path, label_path: Path) -> bool:
    """True if the label PNG exists and is not older than its JSON."""
    try:
        return label_path.stat().st_mtime_ns >= json_path.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def prepare_file(json_path: str | Path) -> bool:
    """Makes the label PNG of one polygon JSON unless it is up to date.

    Returns:
      True if the PNG was written, False if it was up to date.
    """
    json_path = Path(json_path)
    out = label_path_for(json_path)
    if is_up_to_date(json_path, out):
        return False
    write_atomic(encode_png(rasterize(load_annotation(json_path))), out)
    return True


def find_polygon_files(root: str | Path) -> list[Path]:
    """Every `gtFine/**/*_gtFine_polygons.json` under an IDD root, sorted."""
    root = Path(root)
    if not (root / "gtFine").is_dir() and not (root / "leftImg8bit").is_dir():
        raise DataError(f"{root}: not an IDD root (no gtFine/ or leftImg8bit/ folder)")
    return sorted((root / "gtFine").rglob(f"*{POLYGONS_SUFFIX}"))


# Set in each worker process: once a file has failed, the others stop starting new files.
_stop_event = None


def _init_worker(stop_event) -> None:
    global _stop_event
    _stop_event = stop_event


def _task(json_path: Path) -> tuple[str, str | None]:
    """(status, error message or None) of one file: written, skipped, stopped or failed."""
    if _stop_event is not None and _stop_event.is_set():
        return "stopped", None
    try:
        return ("written" if prepare_file(json_path) else "skipped"), None
    except DataError as e:
        if _stop_event is not None:
            _stop_event.set()
        return "failed", str(e)


def _results(files: list[Path], workers: int) -> Iterator[tuple[str, str | None]]:
    """`_task` over the files, in this process or a pool; stops early on a bad file."""
    if min(workers, len(files)) <= 1:
        for path in files:
            result = _task(path)
            yield result
            if result[1] is not None:
                return
        return
    # spawn: safe whatever threads the parent runs (tqdm's monitor, jax).
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(32, len(files) // (8 * workers)))
    with context.Pool(workers, initializer=_init_worker, initargs=(context.Event(),)) as pool:
        yield from pool.imap_unordered(_task, files, chunksize=chunksize)


def prepare_root(root: str | Path, *, workers: int = 1, progress: bool = False) -> dict:
    """Makes every label PNG of an IDD root, in parallel over files.

    Args:
      root: IDD root holding `gtFine/`.
      workers: processes; 1 works in this process.
      progress: show a progress bar on stderr.

    Returns:
      {"written": n, "skipped": n} file counts.

    Raises:
      DataError: for the first bad file (the workers stop starting new files; every PNG
        written so far is complete).
    """
    files = find_polygon_files(root)
    counts = Counter()
    errors = []
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=not progress) as bar:
        for status, error in _results(files, workers):
            counts[status] += 1
            if error is not None:
                errors.append(error)
            bar.update()
    if errors:
        more = f" (and {len(errors) - 1} more bad files)" if len(errors) > 1 else ""
        raise DataError(errors[0] + more)
    return {"written": counts["written"], "skipped": counts["skipped"]}


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(
        "jaxseg.data.prepare", "Make IDD level-3 label PNGs from the polygon JSONs."
    )
    parser.add_argument("--idd-root", required=True, help="IDD root holding gtFine/")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument("--tfds", metavar="OUT", help="also build a TFDS dataset into OUT")
    parser.add_argument(
        "--tfds-config",
        default="full",
        choices=("full", "synthetic"),
        help="TFDS config name: full (real IDD) or synthetic",
    )
    args = parser.parse_args(argv)
    with cli.user_errors():
        # A bar only on a terminal: logs and pipes get just the result or a one-line error.
        counts = prepare_root(args.idd_root, workers=args.workers, progress=sys.stderr.isatty())
        print(f"wrote {counts['written']} label PNGs, {counts['skipped']} already up to date")
        if args.tfds:
            # Imported here: TFDS is an optional extra.
            from jaxseg.data import tfds_idd

            path = tfds_idd.build(
                args.idd_root, args.tfds, config=args.tfds_config, progress=sys.stderr.isatty()
            )
            print(f"wrote TFDS dataset {path}")


if __name__ == "__main__":
    main()
