"""Label spaces: what the ids of a dataset's label files mean, and what a model predicts.

A `LabelSpace` is the dataset metadata that every source carries and that models (their
output count), losses, metrics, reports and predictions read: its name, class names,
palette, the table that maps the ids stored in label files to train ids, and the ids that
prediction files are written in. Train ids are 0..K-1, and `VOID` (255) marks pixels that
carry no loss and are left out of the metrics.

Instances (`LABEL_SPACES`):
- ``idd_level3``: IDD's 26 level-3 classes, read from `*_gtFine_labellevel3Ids.png` (IDD's
  evaluation also stores void as 26). The default of IDD folders and the synthetic data.
- ``idd_level2`` (16 classes) and ``idd_level1`` (7): IDD's own coarser levels, read from
  the same level-3 files through IDD's hierarchy (every level-3 id has one level-2 and one
  level-1 id in IDD's label table), so one config value (`data.labels`) switches levels.
- ``cityscapes``: Cityscapes' 19 evaluated classes read from `*_gtFine_labelIds.png`;
  predictions are written as labelIds, as cityscapesscripts expects.

IDD's table is AutoNUE/public-code `helpers/anue_labels.py` (commit 21bffde); see
docs/datasets.md. A coarser level's palette, like IDD's level-3 colouring, takes the colour
of the first label with that id.
"""

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from jaxseg.errors import ConfigError, DataError

VOID = 255  # The train id of pixels without a class, in every label space.
_UNKNOWN = -1  # A stored id the label space does not define: the label file is bad.


@dataclasses.dataclass(frozen=True)
class IddLabel:
    """One row of IDD's label table (anue_labels.py)."""

    name: str
    level3: int  # 255: void.
    level2: int
    level1: int
    color: tuple[int, int, int]


# IDD's labels in table order; "unlabeled" and the other void labels have level ids 255.
IDD_LABELS = (
    IddLabel("road", 0, 0, 0, (128, 64, 128)),
    IddLabel("parking", 1, 1, 0, (250, 170, 160)),
    IddLabel("drivable fallback", 1, 1, 0, (81, 0, 81)),
    IddLabel("sidewalk", 2, 2, 1, (244, 35, 232)),
    IddLabel("rail track", 3, 3, 1, (230, 150, 140)),
    IddLabel("non-drivable fallback", 3, 3, 1, (152, 251, 152)),
    IddLabel("person", 4, 4, 2, (220, 20, 60)),
    IddLabel("animal", 4, 4, 2, (246, 198, 145)),
    IddLabel("rider", 5, 5, 2, (255, 0, 0)),
    IddLabel("motorcycle", 6, 6, 3, (0, 0, 230)),
    IddLabel("bicycle", 7, 6, 3, (119, 11, 32)),
    IddLabel("autorickshaw", 8, 7, 3, (255, 204, 54)),
    IddLabel("car", 9, 7, 3, (0, 0, 142)),
    IddLabel("truck", 10, 8, 3, (0, 0, 70)),
    IddLabel("bus", 11, 8, 3, (0, 60, 100)),
    IddLabel("caravan", 12, 8, 3, (0, 0, 90)),
    IddLabel("trailer", 12, 8, 3, (0, 0, 110)),
    IddLabel("train", 12, 8, 3, (0, 80, 100)),
    IddLabel("vehicle fallback", 12, 8, 3, (136, 143, 153)),
    IddLabel("curb", 13, 9, 4, (220, 190, 40)),
    IddLabel("wall", 14, 9, 4, (102, 102, 156)),
    IddLabel("fence", 15, 10, 4, (190, 153, 153)),
    IddLabel("guard rail", 16, 10, 4, (180, 165, 180)),
    IddLabel("billboard", 17, 11, 4, (174, 64, 67)),
    IddLabel("traffic sign", 18, 11, 4, (220, 220, 0)),
    IddLabel("traffic light", 19, 11, 4, (250, 170, 30)),
    IddLabel("pole", 20, 12, 4, (153, 153, 153)),
    IddLabel("polegroup", 20, 12, 4, (153, 153, 153)),
    IddLabel("obs-str-bar-fallback", 21, 12, 4, (169, 187, 214)),
    IddLabel("building", 22, 13, 5, (70, 70, 70)),
    IddLabel("bridge", 23, 13, 5, (150, 100, 100)),
    IddLabel("tunnel", 23, 13, 5, (150, 120, 90)),
    IddLabel("vegetation", 24, 14, 5, (107, 142, 35)),
    IddLabel("sky", 25, 15, 6, (70, 130, 180)),
    IddLabel("fallback background", 25, 15, 6, (169, 187, 214)),
    IddLabel("unlabeled", VOID, VOID, VOID, (0, 0, 0)),
    IddLabel("ego vehicle", VOID, VOID, VOID, (0, 0, 0)),
    IddLabel("rectification border", VOID, VOID, VOID, (0, 0, 0)),
    IddLabel("out of roi", VOID, VOID, VOID, (0, 0, 0)),
    IddLabel("license plate", VOID, VOID, VOID, (0, 0, 0)),
)

_GROUP_SUFFIX = "group"
_IDD_BY_NAME = {label.name: label for label in IDD_LABELS}


def idd_level3_id(name: str) -> int | None:
    """The level-3 id of an IDD polygon label name (255: void), or None if unknown.

    As IDD's `json2labelImg.py` does, an unknown name ending in "group" (e.g. "cargroup")
    is looked up without that suffix.
    """
    if name not in _IDD_BY_NAME and name.endswith(_GROUP_SUFFIX):
        name = name[: -len(_GROUP_SUFFIX)]
    label = _IDD_BY_NAME.get(name)
    return None if label is None else label.level3


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """The classes of a dataset and how its label files and predictions encode them."""

    name: str  # Key of `LABEL_SPACES`, recorded in a run's config (`data.labels`).
    class_names: tuple[str, ...]  # Train id -> name.
    palette: tuple[tuple[int, int, int], ...]  # Train id -> RGB colour.
    # Stored label id (0..255) -> train id, VOID, or -1 for an id the space does not define.
    label_table: tuple[int, ...]
    # Train id -> the id written in prediction files (and read back by `jaxseg.score`).
    output_ids: tuple[int, ...]
    void_output_id: int  # Written where nothing (or the void class) is predicted.
    label_suffix: str  # Ground-truth file names end with this, e.g. "_gtFine_labelIds.png".
    headline: tuple[str, ...]  # Classes a summary shows beside PA and mIoU.

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @functools.cached_property
    def _label_lut(self) -> np.ndarray:
        return np.asarray(self.label_table, np.int16)

    @functools.cached_property
    def _prediction_lut(self) -> np.ndarray:
        lut = np.full(256, VOID, np.uint8)
        lut[list(self.output_ids)] = np.arange(self.num_classes, dtype=np.uint8)
        return lut

    def train_ids(self, stored: np.ndarray, origin: str) -> np.ndarray:
        """Train ids [H, W] uint8 of a ground-truth label's stored ids.

        Raises:
          DataError: an id the label space does not define (names the file).
        """
        ids = self._label_lut[np.asarray(stored, np.uint8)]
        if (ids == _UNKNOWN).any():
            bad = int(np.asarray(stored)[ids == _UNKNOWN][0])
            raise DataError(f"{origin}: label id {bad} is not an id of {self.name}")
        return ids.astype(np.uint8)

    def prediction_train_ids(self, stored: np.ndarray) -> np.ndarray:
        """Train ids of a prediction file's ids; an id of no evaluated class becomes VOID,
        which the metrics count as a miss."""
        return self._prediction_lut[np.asarray(stored, np.uint8)]

    def to_output_ids(self, train_ids: np.ndarray) -> np.ndarray:
        """Prediction-file ids [H, W] uint8 of train ids; ids >= K (the void class) and VOID
        become `void_output_id`."""
        lut = np.full(256, self.void_output_id, np.uint8)
        lut[: self.num_classes] = self.output_ids
        return lut[np.clip(np.asarray(train_ids), 0, 255).astype(np.uint8)]

    def colorize(self, train_ids: np.ndarray) -> np.ndarray:
        """[H, W] train ids -> [H, W, 3] uint8 RGB; void and ids >= K are black."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = self.palette
        ids = np.asarray(train_ids)
        return lut[np.where((ids >= 0) & (ids < self.num_classes), ids, VOID).astype(np.uint8)]


def _table(pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """A 256-entry stored-id table: the given (stored id, train id) pairs, the rest unknown."""
    table = [_UNKNOWN] * 256
    for stored, train in pairs:
        table[stored] = train
    return tuple(table)


def _first_colors(level: str, count: int) -> tuple[tuple[int, int, int], ...]:
    colors: dict[int, tuple[int, int, int]] = {}
    for label in IDD_LABELS:
        colors.setdefault(getattr(label, level), label.color)
    return tuple(colors[i] for i in range(count))


def _idd_level(name: str, level: str, class_names: tuple[str, ...], headline) -> LabelSpace:
    """An IDD level read from level-3 files: level-3 id -> this level's id."""
    to_level = {label.level3: getattr(label, level) for label in IDD_LABELS}
    # IDD's evaluation stores void as 26 in level-3 files; 255 is void too.
    pairs = [(l3, to_level[l3]) for l3 in range(26)] + [(26, VOID), (VOID, VOID)]
    count = len(class_names)
    return LabelSpace(
        name=name,
        class_names=class_names,
        palette=_first_colors(level, count),
        label_table=_table(pairs),
        output_ids=tuple(range(count)),
        void_output_id=VOID,
        label_suffix="_gtFine_labellevel3Ids.png",
        headline=headline,
    )


# Level-3 names; each names the first IDD label with that id, some shortened.
IDD_LEVEL3 = _idd_level(
    "idd_level3",
    "level3",
    (
        "road",
        "drivable fallback",
        "sidewalk",
        "non-drivable fallback",
        "person",
        "rider",
        "motorcycle",
        "bicycle",
        "autorickshaw",
        "car",
        "truck",
        "bus",
        "vehicle fallback",
        "curb",
        "wall",
        "fence",
        "guard rail",
        "billboard",
        "traffic sign",
        "traffic light",
        "pole",
        "obs-str-bar-fallback",
        "building",
        "bridge",
        "vegetation",
        "sky",
    ),  # fmt: skip
    # The five classes the reference study's Table 1 reports (docs/study.md).
    ("road", "sidewalk", "car", "billboard", "sky"),
)
# The level-3 palette takes "drivable fallback" etc. from their first label (parking, ...),
# as IDD's tools colour a level-3 image.
IDD_LEVEL2 = _idd_level(
    "idd_level2",
    "level2",
    (
        "road",
        "drivable fallback",
        "sidewalk",
        "non-drivable fallback",
        "person",
        "rider",
        "two-wheeler",
        "car",
        "large vehicle",
        "barrier",
        "fence",
        "traffic sign",
        "pole",
        "construction",
        "vegetation",
        "sky",
    ),  # fmt: skip
    ("road", "sidewalk", "car", "traffic sign", "sky"),
)
IDD_LEVEL1 = _idd_level(
    "idd_level1",
    "level1",
    (
        "drivable",
        "non-drivable",
        "living thing",
        "vehicle",
        "roadside object",
        "far object",
        "sky",
    ),  # fmt: skip
    ("drivable", "non-drivable", "living thing", "vehicle", "roadside object", "far object", "sky"),
)

# Cityscapes' evaluated classes: (name, labelId, colour), in train-id order
# (cityscapesscripts `helpers/labels.py`).
_CITYSCAPES_CLASSES = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
# labelIds 0..33 exist; those not evaluated are ignored. The license plate (-1) is stored
# as 255 in uint8 labelId images.
_CITYSCAPES_TRAIN = {label_id: i for i, (_, label_id, _) in enumerate(_CITYSCAPES_CLASSES)}
CITYSCAPES = LabelSpace(
    name="cityscapes",
    class_names=tuple(name for name, _, _ in _CITYSCAPES_CLASSES),
    palette=tuple(color for _, _, color in _CITYSCAPES_CLASSES),
    label_table=_table([(i, _CITYSCAPES_TRAIN.get(i, VOID)) for i in range(34)] + [(VOID, VOID)]),
    output_ids=tuple(label_id for _, label_id, _ in _CITYSCAPES_CLASSES),
    void_output_id=0,  # "unlabeled": cityscapesscripts rejects ids it does not know.
    label_suffix="_gtFine_labelIds.png",
    headline=("road", "sidewalk", "car", "person", "sky"),
)

LABEL_SPACES: dict[str, LabelSpace] = {
    space.name: space for space in (IDD_LEVEL3, IDD_LEVEL2, IDD_LEVEL1, CITYSCAPES)
}


def label_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes + 1] int64 pixel counts of label maps; every id >= num_classes (void)
    is counted in the last entry. Counts add across images.

    Args:
      label: [...] integer train ids.
      num_classes: K, the classes of the label space.
    """
    ids = np.minimum(np.asarray(label).ravel(), num_classes).astype(np.intp)
    return np.bincount(ids, minlength=num_classes + 1).astype(np.int64)


def get_label_space(name: str) -> LabelSpace:
    """The registered label space `name`; raises ConfigError with the valid names."""
    if name not in LABEL_SPACES:
        raise ConfigError(f"unknown label space {name!r}; valid: {', '.join(LABEL_SPACES)}")
    return LABEL_SPACES[name]
