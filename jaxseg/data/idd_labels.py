"""IDD label names -> level-3 ids, as in IDD's `helpers/anue_labels.py` (AutoNUE/public-code).

Every name that can appear in an IDD polygon JSON is listed, including the fallback classes,
the aliases that share a level-3 id (parking, rail track, animal, caravan, ...) and the void
labels (level-3 id 255).
"""

from jaxseg.classes import VOID

LEVEL3_IDS: dict[str, int] = {
    "road": 0,
    "parking": 1,
    "drivable fallback": 1,
    "sidewalk": 2,
    "rail track": 3,
    "non-drivable fallback": 3,
    "person": 4,
    "animal": 4,
    "rider": 5,
    "motorcycle": 6,
    "bicycle": 7,
    "autorickshaw": 8,
    "car": 9,
    "truck": 10,
    "bus": 11,
    "caravan": 12,
    "trailer": 12,
    "train": 12,
    "vehicle fallback": 12,
    "curb": 13,
    "wall": 14,
    "fence": 15,
    "guard rail": 16,
    "billboard": 17,
    "traffic sign": 18,
    "traffic light": 19,
    "pole": 20,
    "polegroup": 20,
    "obs-str-bar-fallback": 21,
    "building": 22,
    "bridge": 23,
    "tunnel": 23,
    "vegetation": 24,
    "sky": 25,
    "fallback background": 25,
    "unlabeled": VOID,
    "ego vehicle": VOID,
    "rectification border": VOID,
    "out of roi": VOID,
    "license plate": VOID,
}

_GROUP_SUFFIX = "group"


def level3_id(label: str) -> int | None:
    """The level-3 id of an IDD label name, or None if the name is unknown.

    As IDD's `json2labelImg.py` does, an unknown name ending in "group" (e.g. "cargroup")
    is looked up without that suffix.
    """
    if label not in LEVEL3_IDS and label.endswith(_GROUP_SUFFIX):
        label = label[: -len(_GROUP_SUFFIX)]
    return LEVEL3_IDS.get(label)
