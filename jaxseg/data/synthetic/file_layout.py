"""How a dataset's files are named and what their labels hold: IDD's layout.

Images go under `leftImg8bit/{split}/{folder}/` and labels under `gtFine/{split}/{folder}/`.
"""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from jaxseg.data.labels import IDD_LEVEL3, LabelSpace
from jaxseg.data.synthetic.params import SPLITS

IMAGES_PER_SEQUENCE = 20  # Examples per sequence folder.
JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True, eq=False)
class FileLayout:
    """The files of one example: where they go, their image format and their label ids."""

    name: str
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


IDD = FileLayout(
    name="idd",
    description="IDD (leftImg8bit/gtFine, level-3 ids, 255 = void)",
    labels=IDD_LEVEL3,
    label_ids=np.arange(256, dtype=np.uint8),  # Stored as drawn.
    image_suffix="_leftImg8bit.jpg",
    image_options={"quality": JPEG_QUALITY},
    stem=_idd_stem,
)
