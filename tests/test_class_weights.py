"""Class weights against values computed by hand from the study's pixel counts."""

import json
import math

import numpy as np
import pytest

from jaxseg.class_weights import (
    CLASS_WEIGHTS,
    SEED_PIXEL_COUNTS,
    class_weights,
    load_counts,
)
from jaxseg.data.labels import IDD_LEVEL1, IDD_LEVEL3, label_counts
from jaxseg.errors import ConfigError, DataError

ROAD, SIDEWALK, TRAFFIC_LIGHT, SKY, VOID_ENTRY = 0, 2, 19, 25, 26


def test_seed_counts_are_every_pixel_of_the_seeds_training_images():
    assert len(SEED_PIXEL_COUNTS) == 27
    assert SEED_PIXEL_COUNTS[ROAD] == 2198453584 and SEED_PIXEL_COUNTS[VOID_ENTRY] == 2775322
    # 4019 training images of 1080 x 1920 pixels.
    assert sum(SEED_PIXEL_COUNTS) == 4019 * 1080 * 1920 == 8333798400


def test_seed_scheme_with_void_as_class():
    weights = class_weights("seed", SEED_PIXEL_COUNTS, 26, 27)
    assert weights.shape == (27,) and weights.dtype == np.float32
    assert weights[ROAD] == pytest.approx(1 - 2198453584 / 8333798400, rel=1e-6)
    assert weights[ROAD] == pytest.approx(0.736201, abs=1e-6)
    assert weights[VOID_ENTRY] == pytest.approx(1 - 2775322 / 8333798400, rel=1e-6)


def test_seed_scheme_with_void_ignored_uses_the_first_26_counts():
    weights = class_weights("seed", SEED_PIXEL_COUNTS, 26, 26)
    total = 8333798400 - 2775322
    assert weights.shape == (26,)
    assert weights[SKY] == pytest.approx(1 - 1823922767 / total, rel=1e-6)
    np.testing.assert_allclose(
        weights, class_weights("seed", SEED_PIXEL_COUNTS[:26], 26, 26), rtol=0, atol=0
    )


def test_inverse_frequency_is_balanced():
    weights = class_weights("inverse_frequency", SEED_PIXEL_COUNTS, 26, 27)
    assert weights[TRAFFIC_LIGHT] == pytest.approx(8333798400 / (27 * 450973), rel=1e-6)
    assert weights[ROAD] == pytest.approx(8333798400 / (27 * 2198453584), rel=1e-6)
    assert class_weights("inverse_frequency", [5] * 26, 26, 26) == pytest.approx(np.ones(26))


def test_median_frequency():
    weights = class_weights("median_frequency", SEED_PIXEL_COUNTS, 26, 26)
    ordered = sorted(SEED_PIXEL_COUNTS[:26])
    median_count = (ordered[12] + ordered[13]) / 2  # 26 classes: mean of the middle two.
    assert weights[SIDEWALK] == pytest.approx(median_count / 28929892, rel=1e-6)
    assert sorted(weights)[12] < 1 < sorted(weights)[13]


def test_enet():
    weights = class_weights("enet", SEED_PIXEL_COUNTS, 26, 27)
    assert weights[ROAD] == pytest.approx(1 / math.log(1.02 + 2198453584 / 8333798400), rel=1e-6)
    assert weights.max() <= 1 / math.log(1.02)


def test_none_gives_no_weights():
    assert class_weights("none", SEED_PIXEL_COUNTS, 26, 26) is None


# seed and enet give p = 0 its own, strictly largest, weight; the inverse schemes give it
# the weight of the rarest class that has pixels.
@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("seed", lambda others: 1.0),
        ("enet", lambda others: 1 / math.log(1.02)),
        ("inverse_frequency", max),
        ("median_frequency", max),
    ],
)
def test_class_without_pixels_gets_the_largest_weight(scheme, expected):
    counts = list(SEED_PIXEL_COUNTS)
    counts[TRAFFIC_LIGHT] = 0
    weights = class_weights(scheme, counts, 26, 27)
    others = np.delete(weights, TRAFFIC_LIGHT)
    assert np.isfinite(weights).all()
    assert weights[TRAFFIC_LIGHT] == pytest.approx(expected(others), rel=1e-6)
    assert weights[TRAFFIC_LIGHT] >= others.max()


def test_unknown_scheme_and_bad_counts_raise():
    with pytest.raises(ConfigError, match="unknown class-weight scheme 'balanced'; valid: none"):
        class_weights("balanced", SEED_PIXEL_COUNTS, 26, 27)
    with pytest.raises(ConfigError, match="expected 26 or 27"):
        class_weights("seed", SEED_PIXEL_COUNTS, 26, 21)
    with pytest.raises(DataError, match="expected 27 values"):
        class_weights("seed", SEED_PIXEL_COUNTS[:26], 26, 27)
    with pytest.raises(DataError, match="non-negative"):
        class_weights("seed", [0] * 27, 26, 27)


def test_registry_names():
    assert set(CLASS_WEIGHTS) == {"none", "seed", "inverse_frequency", "median_frequency", "enet"}


def test_load_counts_preset_and_file(tmp_path):
    np.testing.assert_array_equal(load_counts("seed", IDD_LEVEL3), SEED_PIXEL_COUNTS)
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(list(range(26))))
    np.testing.assert_array_equal(load_counts(str(path), IDD_LEVEL3), np.arange(26))
    path.write_text(json.dumps([1.5] * 27))
    with pytest.raises(DataError, match="counts.json"):
        load_counts(str(path), IDD_LEVEL3)
    with pytest.raises(ConfigError, match="not a preset"):
        load_counts(str(tmp_path / "missing.json"), IDD_LEVEL3)
    # The study's counts are IDD level-3 classes; other label spaces count their own.
    with pytest.raises(ConfigError, match="counts idd_level3 classes, not idd_level1"):
        load_counts("seed", IDD_LEVEL1)
    path.write_text(json.dumps(list(range(8))))
    np.testing.assert_array_equal(load_counts(str(path), IDD_LEVEL1), np.arange(8))


def test_label_counts_put_void_last():
    labels = np.array([[0, 0, 25], [255, 26, 3]], np.uint8)
    counts = label_counts(labels, 26)
    assert counts.shape == (27,) and counts.sum() == 6
    assert counts[0] == 2 and counts[25] == 1 and counts[3] == 1 and counts[26] == 2
