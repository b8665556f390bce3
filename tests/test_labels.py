"""Label spaces: IDD's table and hierarchy, colours, and the ids of prediction files."""

import numpy as np
import pytest

from jaxseg.data.labels import (
    CITYSCAPES,
    IDD_LABELS,
    IDD_LEVEL1,
    IDD_LEVEL2,
    IDD_LEVEL3,
    LABEL_SPACES,
    VOID,
    get_label_space,
)
from jaxseg.errors import ConfigError, DataError


def test_colorize_uses_the_idd_palette():
    k = IDD_LEVEL3.num_classes
    assert k == 26 and len(set(IDD_LEVEL3.palette)) == k
    label = np.array([[*range(k), 26, VOID]], np.uint8)
    rgb = IDD_LEVEL3.colorize(label)
    assert rgb.shape == (1, k + 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :k], np.array(IDD_LEVEL3.palette, np.uint8))
    np.testing.assert_array_equal(rgb[0, k:], 0)
    assert tuple(IDD_LEVEL3.colorize(np.array([[0]]))[0, 0]) == (128, 64, 128)  # Road.
    assert tuple(IDD_LEVEL3.colorize(np.array([[25]]))[0, 0]) == (70, 130, 180)  # Sky.
    # Merged classes take their first label's colour, as IDD's tools draw level 3.
    assert IDD_LEVEL3.palette[1] == (250, 170, 160)  # Parking, not drivable fallback.


def test_idd_hierarchy_is_a_function_of_the_level3_id():
    """Every level-3 id has exactly one level-2 and one level-1 id in IDD's table."""
    for level in ("level2", "level1"):
        seen = {}
        for label in IDD_LABELS:
            assert seen.setdefault(label.level3, getattr(label, level)) == getattr(label, level)
    assert IDD_LEVEL2.num_classes == 16 and IDD_LEVEL1.num_classes == 7
    counts = np.bincount([label.level1 for label in IDD_LABELS if label.level1 != VOID])
    assert counts.tolist() == [3, 3, 3, 10, 10, 4, 2]  # Counted by hand in IDD's table.


def test_prediction_ids_round_trip_and_unknown_ids_are_misses():
    for space in LABEL_SPACES.values():
        train = np.arange(space.num_classes + 1, dtype=np.uint8)  # The last: the void class.
        stored = space.to_output_ids(train)
        assert stored[-1] == space.void_output_id
        back = space.prediction_train_ids(stored)
        np.testing.assert_array_equal(back[:-1], train[:-1])
        assert back[-1] == VOID
    # Cityscapes writes labelIds; an ignored labelId predicted is no class: a miss.
    assert CITYSCAPES.to_output_ids(np.array([0, 18]))[1] == 33
    assert CITYSCAPES.prediction_train_ids(np.array([4]))[0] == VOID


def test_unknown_stored_ids_and_names():
    with pytest.raises(DataError, match="a.png: label id 27 is not an id of idd_level3"):
        IDD_LEVEL3.train_ids(np.array([[27]], np.uint8), "a.png")
    with pytest.raises(ConfigError, match="valid: idd_level3, idd_level2, idd_level1"):
        get_label_space("ade20k")
