"""How a dataset's files are named and what their labels hold: IDD's layout or Cityscapes'.

Both put images under `leftImg8bit/{split}/{folder}/` and labels under `gtFine/{split}/
{folder}/`; the scenes drawn are the same, only file names, image format and label ids differ.
"""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL3, VOID, LabelSpace
from jaxseg.data.synthetic import class_sets as level3
from jaxseg.data.synthetic.params import SPLITS, lookup

IMAGES_PER_SEQUENCE = 20  # Examples per sequence folder (IDD) or sequence number (Cityscapes).
JPEG_QUALITY = 90
CITY = "synthcity"  # The one "city" of the Cityscapes layout.

# Level-3 id -> Cityscapes labelId (cityscapesscripts `helpers/labels.py`). Level-3 classes
# Cityscapes lacks take its nearest label: mud shoulders are parking, dirt is terrain, the
# fallback vehicle a caravan, and autorickshaws, billboards and barriers fall under its
# ignored "dynamic" (5) and "static" (4). Cityscapes labels curbs as sidewalk; void is
# "unlabeled" (0).
CITYSCAPES_LABEL_IDS = {
    level3.ROAD: 7, level3.DRIVABLE: 9, level3.SIDEWALK: 8, level3.NON_DRIVABLE: 22,
    level3.PERSON: 24, level3.RIDER: 25, level3.MOTORCYCLE: 32, level3.BICYCLE: 33,
    level3.AUTORICKSHAW: 5, level3.CAR: 26, level3.TRUCK: 27, level3.BUS: 28, level3.VEHICLE: 29,
    level3.CURB: 8, level3.WALL: 12, level3.FENCE: 13, level3.GUARD_RAIL: 14,
    level3.BILLBOARD: 4, level3.SIGN: 20, level3.LIGHT: 19, level3.POLE: 17, level3.OBSTACLE: 4,
    level3.BUILDING: 11, level3.BRIDGE: 15, level3.VEGETATION: 21, level3.SKY: 23, VOID: 0,
}  # fmt: skip


def _lookup_table(ids: Mapping[int, int]) -> np.ndarray:
    """[256] uint8: drawn id -> stored id. The drawing writes only the ids of `ids`."""
    table = np.zeros(256, np.uint8)
    table[list(ids)] = list(ids.values())
    return table


@dataclasses.dataclass(frozen=True, eq=False)
class FileLayout:
    """The files of one example: where they go, their image format and their label ids."""

    name: str  # Key of `FILE_LAYOUTS`: the `layout` parameter.
    description: str  # Recorded in the manifest.
    labels: LabelSpace  # What the stored ids mean; the manifest's pixel counts are its train ids.
    label_ids: np.ndarray  # [256] uint8: drawn level-3 id (255: void) -> stored id.
    image_suffix: str  # Image file names end with this.
    image_options: Mapping[str, object]  # Pillow's save options for the images.
    # (split, index, seed) -> (folder, file-name stem) of an example.
    stem: Callable[[str, int, int], tuple[str, str]]

    def paths(self, root: Path, split: str, index: int, seed: int) -> tuple[Path, Path]:
        """(image, label) paths of example `index` of `split`."""
        folder, stem = self.stem(split, index, seed)
        return (
            root / "leftImg8bit" / split / folder / f"{stem}{self.image_suffix}",
            root / "gtFine" / split / folder / f"{stem}{self.labels.label_suffix}",
        )


def _idd_stem(split: str, index: int, seed: int) -> tuple[str, str]:
    # The split's digit keeps names unique across splits (predictions often share a folder).
    return f"s{index // IMAGES_PER_SEQUENCE:03d}", f"{seed}_{SPLITS.index(split)}{index:05d}"


def _cityscapes_stem(split: str, index: int, seed: int) -> tuple[str, str]:
    # Sequence numbers stand in for IDD's sequence folders; the split's digit in front keeps
    # names unique across splits. Like Cityscapes' names (city, sequence, frame), they leave
    # out the seed: the manifest records it.
    sequence = SPLITS.index(split) * 10_000 + index // IMAGES_PER_SEQUENCE
    return CITY, f"{CITY}_{sequence:06d}_{index % IMAGES_PER_SEQUENCE:06d}"


IDD = FileLayout(
    name="idd",
    description="IDD (leftImg8bit/gtFine, level-3 ids, 255 = void)",
    labels=IDD_LEVEL3,
    label_ids=np.arange(256, dtype=np.uint8),  # Stored as drawn.
    image_suffix="_leftImg8bit.jpg",
    image_options={"quality": JPEG_QUALITY},
    stem=_idd_stem,
)
CITYSCAPES_LAYOUT = FileLayout(
    name="cityscapes",
    description="Cityscapes (leftImg8bit/gtFine PNGs, labelIds, 0 = unlabeled; pixel counts "
    "of the 19 evaluated classes, then void)",
    labels=CITYSCAPES,
    label_ids=_lookup_table(CITYSCAPES_LABEL_IDS),
    image_suffix="_leftImg8bit.png",  # Lossless, as Cityscapes' images are.
    image_options={},
    stem=_cityscapes_stem,
)
FILE_LAYOUTS: dict[str, FileLayout] = {layout.name: layout for layout in (IDD, CITYSCAPES_LAYOUT)}


def file_layout(name: str) -> FileLayout:
    """The `FileLayout` of a `layout` parameter; ConfigError names the valid ones."""
    return lookup("layout", name, FILE_LAYOUTS)
