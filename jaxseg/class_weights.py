"""Per-class loss weights from training-set pixel counts.

Counts are a vector of 26 class counts, or 27 with void (the seed's class 26, "unlabeled")
last. With 26 model outputs (`void: ignore`) the weights use the first 26 counts; with 27
(`void: class`) all 27, void included, as the seed did.

Schemes (p_c = n_c / sum(n) over the counts used, K = number of outputs):

- ``none``: no weights (uniform loss).
- ``seed``: the seed's ``w_c = 1 - p_c``, unnormalised, as published.
- ``inverse_frequency``: ``w_c = 1 / (K p_c)``, i.e. scikit-learn's "balanced" weights:
  1 for every class when all are equally frequent.
- ``median_frequency``: median frequency balancing (Eigen & Fergus 2015),
  ``w_c = median(p) / p_c`` with the median over classes that have pixels, so the median
  class weighs 1. Eigen & Fergus divide by the pixels of the images containing the class;
  from plain pixel counts the frequency is taken over all pixels.
- ``enet``: ENet's ``w_c = 1 / ln(1.02 + p_c)`` (Paszke et al. 2016), unnormalised; bounded
  by 1 / ln(1.02) ~ 50.5.

A class with no pixels gets the largest weight the scheme gives any class: for ``seed``
(1) and ``enet`` (1 / ln 1.02) that is the formula's own value at p = 0; for the two
inverse schemes, whose formula is infinite there, the largest weight of the classes that
have pixels. Such a class has no training pixels to weigh when the counts come from the
training set; the choice matters when counts come from elsewhere, and the largest weight
errs on the side of a rare class.

The weighted cross-entropy divides by the summed weights of the pixels
(`jaxseg.losses.weighted_cross_entropy`), so a common scale factor of the weights does not
change the loss; the normalisations above only keep the numbers readable.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxseg.classes import NUM_CLASSES, VOID, VOID_CLASS_ID
from jaxseg.errors import ConfigError, DataError

# SPEC 2: pixels per class over the seed's IDD Part II training set; the last is void.
SEED_PIXEL_COUNTS = (
    2198453584,
    519609102,
    28929892,
    126362539,
    58804972,
    59032134,
    94293190,
    2569952,
    101519794,
    163659019,
    105075839,
    47400301,
    30998126,
    133835645,
    135950687,
    41339482,
    15989829,
    104795610,
    8062798,
    450973,
    94820222,
    341805135,
    557016609,
    71159311,
    1465165566,
    1823922767,
    2775322,
)

# Named count vectors for `loss.class_counts`; anything else is read as a JSON file.
CLASS_COUNTS = {"seed": SEED_PIXEL_COUNTS}

ENET_C = 1.02


def _seed(freq: np.ndarray) -> np.ndarray:
    return 1.0 - freq


def _inverse_frequency(freq: np.ndarray) -> np.ndarray:
    present = freq > 0
    weights = np.zeros_like(freq)
    weights[present] = 1.0 / (freq.size * freq[present])
    return _fill_absent(weights, present)


def _median_frequency(freq: np.ndarray) -> np.ndarray:
    present = freq > 0
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return _fill_absent(weights, present)


def _enet(freq: np.ndarray) -> np.ndarray:
    return 1.0 / np.log(ENET_C + freq)


def _fill_absent(weights: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, weights, weights[present].max())


# Each maps class frequencies [K] float64 (summing to 1) to weights [K]; None: no weights.
CLASS_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "none": None,
    "seed": _seed,
    "inverse_frequency": _inverse_frequency,
    "median_frequency": _median_frequency,
    "enet": _enet,
}


def class_weights(scheme: str, counts: Sequence[int], num_outputs: int) -> np.ndarray | None:
    """Loss weights for the model's outputs.

    Args:
      scheme: a key of `CLASS_WEIGHTS`.
      counts: 26 class pixel counts, or 27 with void last (e.g. `SEED_PIXEL_COUNTS`).
      num_outputs: 26 (void ignored: the first 26 counts) or 27 (void as class 26: all 27).

    Returns:
      [num_outputs] float32 weights, or None for ``none``.

    Raises:
      ConfigError: unknown scheme or output count.
      DataError: counts of the wrong length, negative, or all zero.
    """
    if scheme not in CLASS_WEIGHTS:
        raise ConfigError(
            f"unknown class-weight scheme {scheme!r}; valid: {', '.join(CLASS_WEIGHTS)}"
        )
    if num_outputs not in (NUM_CLASSES, NUM_CLASSES + 1):
        raise ConfigError(f"class weights for {num_outputs} outputs; expected 26 or 27")
    weigh = CLASS_WEIGHTS[scheme]
    if weigh is None:
        return None
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape not in ((NUM_CLASSES,), (NUM_CLASSES + 1,)) or counts.size < num_outputs:
        raise DataError(
            f"class counts: expected {num_outputs}"
            f"{' or 27' if num_outputs == NUM_CLASSES else ''} values, got shape {counts.shape}"
        )
    counts = counts[:num_outputs]
    if (counts < 0).any() or counts.sum() == 0:
        raise DataError("class counts must be non-negative and not all zero")
    return weigh(counts / counts.sum()).astype(np.float32)


def load_counts(source: str) -> np.ndarray:
    """Pixel counts from a preset name of `CLASS_COUNTS` or a JSON file holding a list.

    Args:
      source: ``seed`` or a path to a JSON list of 26 or 27 non-negative integers (for
        example written from `pixel_counts` summed over a training set).

    Returns:
      [26] or [27] int64 counts.

    Raises:
      ConfigError: neither a preset nor an existing file.
      DataError: the file is not a JSON list of 26 or 27 non-negative integers.
    """
    if source in CLASS_COUNTS:
        return np.asarray(CLASS_COUNTS[source], np.int64)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"class counts {source!r}: not a preset ({', '.join(CLASS_COUNTS)}) nor a file"
        )
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON list of class counts ({e})") from None
    if not (
        isinstance(values, list)
        and len(values) in (NUM_CLASSES, NUM_CLASSES + 1)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    ):
        raise DataError(f"{path}: expected a JSON list of 26 or 27 non-negative integers")
    return np.asarray(values, np.int64)


def pixel_counts(labels: np.ndarray) -> np.ndarray:
    """Pixels per class of level-3 label maps, in the 27-entry layout of `SEED_PIXEL_COUNTS`.

    Args:
      labels: [...] integer ids; anything outside 0..25 (255, 26) counts as void, the last entry.

    Returns:
      [27] int64 counts; they add across images.
    """
    ids = np.asarray(labels).ravel().astype(np.int64)
    ids = np.where((ids == VOID) | (ids < 0) | (ids > VOID_CLASS_ID), VOID_CLASS_ID, ids)
    return np.bincount(ids, minlength=NUM_CLASSES + 1).astype(np.int64)
