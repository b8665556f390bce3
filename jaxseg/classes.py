"""IDD level-3 label ids (SPEC 3): 26 classes, 255 = void, and the official colours."""

import numpy as np

VOID = 255
NUM_CLASSES = 26
# With `void: class` the seed's course trains void as a 27th class with this id.
VOID_CLASS_ID = 26

CLASS_NAMES = (
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
)

# The seed's Table 1 reports these five classes next to PA and mIoU.
SEED_CLASSES = ("road", "sidewalk", "car", "billboard", "sky")

# The official IDD level-3 colours: for each level3Id, the colour of the first label with that
# id in AutoNUE/public-code helpers/anue_labels.py (commit 21bffde). Some level-3 classes merge
# several level-1 labels (parking and drivable fallback -> 1, ...); IDD's tools colour a
# level-3 image with the first one, so we do too.
PALETTE = (
    (128, 64, 128),  # road
    (250, 170, 160),  # drivable fallback (first entry: parking)
    (244, 35, 232),  # sidewalk
    (230, 150, 140),  # non-drivable fallback (first entry: rail track)
    (220, 20, 60),  # person
    (255, 0, 0),  # rider
    (0, 0, 230),  # motorcycle
    (119, 11, 32),  # bicycle
    (255, 204, 54),  # autorickshaw
    (0, 0, 142),  # car
    (0, 0, 70),  # truck
    (0, 60, 100),  # bus
    (0, 0, 90),  # vehicle fallback (first entry: caravan)
    (220, 190, 40),  # curb
    (102, 102, 156),  # wall
    (190, 153, 153),  # fence
    (180, 165, 180),  # guard rail
    (174, 64, 67),  # billboard
    (220, 220, 0),  # traffic sign
    (250, 170, 30),  # traffic light
    (153, 153, 153),  # pole
    (169, 187, 214),  # obs-str-bar-fallback
    (70, 70, 70),  # building
    (150, 100, 100),  # bridge
    (107, 142, 35),  # vegetation
    (70, 130, 180),  # sky
)


def _palette_lut() -> np.ndarray:
    # 256 entries so any uint8 id indexes it; everything past the 26 classes (26 = the seed's
    # "unlabeled", 255 = void) stays black as in IDD's tools.
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut


_PALETTE_LUT = _palette_lut()


def colorize(label: np.ndarray) -> np.ndarray:
    """Colours a level-3 label map with the official IDD palette.

    Args:
      label: [H, W] integer level-3 ids; 26 and 255 (void) and any other id outside 0..25
        become black.

    Returns:
      [H, W, 3] uint8 RGB image.
    """
    label = np.asarray(label)
    ids = np.where((label >= 0) & (label < NUM_CLASSES), label, VOID).astype(np.uint8)
    return _PALETTE_LUT[ids]
