"""Per-class loss weights from training-set pixel counts.

Counts are a vector of K class counts (K classes of the label space), or K + 1 with void
last (the study's class 26, "unlabeled", for IDD level 3). With K model outputs
(`void: ignore`) the weights use the first K counts; with K + 1 (`void: class`) all of
them, void included, as the study did.

Schemes (p_c = n_c / sum(n) over the counts used, K = number of outputs):

- ``none``: no weights (uniform loss).
- ``seed``: the study's ``w_c = 1 - p_c``, unnormalised, as published (docs/study.md).
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
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import progress
from jaxseg.data import sources, stats
from jaxseg.data.labels import LabelSpace
from jaxseg.errors import ConfigError, DataError

# Pixels per IDD level-3 class over the study's IDD Part II training set (docs/study.md);
# the last is void.
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

# Named count vectors for `loss.class_counts` and the label space they count; anything else
# is read as a JSON file ("train": counted over the training split, see `for_config`).
CLASS_COUNTS = {"seed": ("idd_level3", SEED_PIXEL_COUNTS)}

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


def class_weights(
    scheme: str, counts: Sequence[int], num_classes: int, num_outputs: int
) -> np.ndarray | None:
    """Loss weights for the model's outputs.

    Args:
      scheme: a key of `CLASS_WEIGHTS`.
      counts: K class pixel counts, or K + 1 with void last (e.g. `SEED_PIXEL_COUNTS`).
      num_classes: K, the classes of the label space.
      num_outputs: K (void ignored: the first K counts) or K + 1 (void as a class).

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
    if num_outputs not in (num_classes, num_classes + 1):
        raise ConfigError(
            f"class weights for {num_outputs} outputs; expected {num_classes} or {num_classes + 1}"
        )
    weigh = CLASS_WEIGHTS[scheme]
    if weigh is None:
        return None
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape not in ((num_classes,), (num_classes + 1,)) or counts.size < num_outputs:
        expected = f"{num_outputs}" + (
            f" or {num_classes + 1}" if num_outputs == num_classes else ""
        )
        raise DataError(f"class counts: expected {expected} values, got shape {counts.shape}")
    counts = counts[:num_outputs]
    if (counts < 0).any() or counts.sum() == 0:
        raise DataError("class counts must be non-negative and not all zero")
    return weigh(counts / counts.sum()).astype(np.float32)


def load_counts(source: str, label_space: LabelSpace) -> np.ndarray:
    """Pixel counts from a preset name of `CLASS_COUNTS` or a JSON file holding a list.

    Args:
      source: ``seed`` (IDD level 3 only) or a path to a JSON list of K or K + 1
        non-negative integers (for example written by `python -m jaxseg.data.stats`).
      label_space: the classes the counts are for (K of them).

    Returns:
      [K] or [K + 1] int64 counts.

    Raises:
      ConfigError: neither a preset nor an existing file, or a preset of another label
        space.
      DataError: the file is not a JSON list of K or K + 1 non-negative integers.
    """
    k = label_space.num_classes
    if source in CLASS_COUNTS:
        space, counts = CLASS_COUNTS[source]
        if space != label_space.name:
            raise ConfigError(
                f"loss.class_counts={source!r} counts {space} classes, not {label_space.name}; "
                "use loss.class_counts=train"
            )
        return np.asarray(counts, np.int64)
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
        and len(values) in (k, k + 1)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    ):
        raise DataError(f"{path}: expected a JSON list of {k} or {k + 1} non-negative integers")
    return np.asarray(values, np.int64)


def for_config(
    config: ml_collections.ConfigDict,
    workdir: Path,
    label_space: LabelSpace,
    num_outputs: int,
    train_source: sources.Source | None = None,
) -> jax.Array | None:
    """Per-output loss weights of the config's scheme and pixel counts (None: uniform).

    `loss.class_counts: train` counts the training split's pixels once and keeps them in
    the workdir's `class_counts.json`, which later runs and `evaluate` reuse.
    """
    if config.loss.class_weights == "none":
        return None
    counts_source = config.loss.class_counts
    if counts_source == "train":
        cached = Path(workdir) / "class_counts.json"
        if not cached.exists():
            if train_source is None:
                raise DataError(f"{cached}: missing (made by jaxseg.train on first use)")
            logging.info("counting class pixels of the training split for the class weights")
            counts = stats.pixel_counts(train_source)
            if progress.is_main_process():
                cached.write_text(json.dumps([int(c) for c in counts]) + "\n")
        counts_source = str(cached)
    weights = class_weights(
        config.loss.class_weights,
        load_counts(counts_source, label_space),
        label_space.num_classes,
        num_outputs,
    )
    return jnp.asarray(weights, jnp.float32)
