"""Pure loss functions of arrays, and the registry of losses `loss.terms` names.

Every registered loss is a pure function `(logits, labels, class_weights, **options) ->
(sum, weight)` whose batch value is `sum / weight`:

- logits: [B, H, W, C] of any float dtype (computed in float32);
- labels: [B, H, W] int in [0, C) or `VOID` (255) for pixels that carry no loss (void under
  `data.void=ignore`, padding examples); `steps.loss_terms` applies the void policy first;
- class_weights: [C] float or None.

Logits at `VOID` pixels are replaced by zeros first (`_prepare`), so no loss value and no
gradient ever depends on them; a batch without a valid pixel gives 0, not NaN.

The losses and their references (`tests/test_losses.py`):

- ``ce``: cross-entropy as ``torch.nn.CrossEntropyLoss(weight, ignore_index)``: the
  class-weighted mean over valid pixels.
- ``ohem``: online hard example mining cross-entropy (HRNet's ``OhemCrossEntropy``): keeps
  the valid pixels whose softmax probability of the true class is below
  ``max(threshold, p_k)``, p_k being the (``min_kept`` + 1)-th lowest such probability of the
  batch (so ``min_kept`` pixels stay when there are that many, ties aside), and averages
  their cross-entropy, class-weighted as ``ce``.
- ``focal``: segmentation_models_pytorch's ``FocalLoss(mode="multiclass")``: one-vs-all
  sigmoid focal loss ``(1 - p_t)^gamma * BCE`` (times ``alpha`` for the class's pixels and
  ``1 - alpha`` for the others, when ``alpha`` is set), averaged over valid pixels per class,
  then over classes (class-weighted: ``sum_c w_c L_c / sum_c w_c``).
- ``dice``: segmentation_models_pytorch's ``DiceLoss(mode="multiclass")``: soft Dice of the
  softmax over the whole batch per class, ``1 - (I + smooth) / ((P + T) / 2 + smooth)``;
  classes without ground-truth pixels in the batch add 0; the mean is over all C classes
  (class-weighted as ``focal``).
- ``lovasz``: segmentation_models_pytorch's ``LovaszLoss(mode="multiclass")`` (Berman et
  al. 2018): the Lovász-softmax over the whole batch, averaged over the classes present in
  the batch's ground truth. It takes no class weights.

``ce``, ``ohem`` and ``focal`` add over pixels: their (sum, weight) add over batches. ``dice``
and ``lovasz`` are functions of the whole batch: they return (value, 1). `combined_terms`
adds the configured terms over one denominator; its docstring says how a validation pass
averages them.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxseg.data.labels import VOID
from jaxseg.errors import ConfigError

VOID_POLICIES = ("ignore", "class")

# The smallest denominator of a mean: a batch without valid pixels gives 0 / EPS = 0.
EPS = 1e-12


def num_outputs(num_classes: int, void: str) -> int:
    """Model output count for a void policy: ``class`` adds void as one more class."""
    if void not in VOID_POLICIES:
        raise ValueError(f"unknown void policy {void!r}; valid: {', '.join(VOID_POLICIES)}")
    return num_classes + (void == "class")


def apply_void_policy(labels: jax.Array, void: str, num_classes: int) -> jax.Array:
    """Maps void (255) to the extra class id `num_classes` under ``void: class``; leaves it
    otherwise.

    Args:
      labels: [B, H, W] int32 train ids, 255 = void.
      void: ``ignore`` (void carries no loss) or ``class`` (void is class `num_classes`).
      num_classes: classes of the label space.
    """
    num_outputs(num_classes, void)  # Validates the policy name.
    if void == "class":
        return jnp.where(labels == VOID, num_classes, labels)
    return labels


def _prepare(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(float32 logits with zeros at void pixels, labels with 0 at void pixels, valid mask).

    Zeroing first (rather than only masking the result) keeps every loss and its gradient
    independent of void logits, even non-finite ones.
    """
    valid = labels != VOID
    logits = jnp.where(valid[..., None], logits.astype(jnp.float32), 0.0)
    return logits, jnp.where(valid, labels, 0), valid


def _pixel_weights(
    labels: jax.Array, valid: jax.Array, class_weights: jax.Array | None
) -> jax.Array:
    """[B, H, W] float32: the true class's weight at valid pixels (1 without weights), 0 at
    void pixels."""
    weights = valid.astype(jnp.float32)
    if class_weights is not None:
        weights = weights * jnp.asarray(class_weights, jnp.float32)[labels]
    return weights


def pixel_weight_sum(labels: jax.Array, class_weights: jax.Array | None = None) -> jax.Array:
    """The cross-entropy's denominator: valid pixels, each counted with its class weight.

    Args:
      labels: [B, H, W] int labels, `VOID` = no loss.
      class_weights: [C] or None.
    """
    valid = labels != VOID
    return jnp.sum(_pixel_weights(jnp.where(valid, labels, 0), valid, class_weights))


def weighted_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    ignore_index: int = VOID,
) -> jax.Array:
    """Cross-entropy averaged like ``torch.nn.CrossEntropyLoss(weight, ignore_index)``.

    The mean is ``sum_i w[y_i] * nll_i / sum_i w[y_i]`` over pixels whose label is not
    ``ignore_index``; a batch with no such pixel gives 0 rather than NaN.

    Args:
      logits: [B, H, W, K] logits (any float dtype; the loss is computed in float32).
      labels: [B, H, W] int labels in [0, K) or ``ignore_index``.
      class_weights: [K] per-class weights, or None for uniform.
      ignore_index: label value that carries no loss.

    Returns:
      Scalar float32 loss.
    """
    weighted_nll_sum, weight_sum = cross_entropy_terms(logits, labels, class_weights, ignore_index)
    return weighted_nll_sum / jnp.maximum(weight_sum, EPS)


def _nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[B, H, W] negative log-softmax of the true class."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def cross_entropy_terms(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    ignore_index: int = VOID,
) -> tuple[jax.Array, jax.Array]:
    """Numerator and denominator of `weighted_cross_entropy`; both add over batches."""
    logits, safe_labels, valid = _prepare(logits, jnp.where(labels == ignore_index, VOID, labels))
    weights = _pixel_weights(safe_labels, valid, class_weights)
    return jnp.sum(weights * _nll(logits, safe_labels)), jnp.sum(weights)


def ohem_terms(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    *,
    threshold: float = 0.7,
    min_kept: int = 100_000,
) -> tuple[jax.Array, jax.Array]:
    """OHEM cross-entropy over the hard pixels of the batch (see the module docstring).

    Returns:
      (sum of w[y] * nll over kept pixels, sum of w[y] over them); the kept set depends on
      the batch, so sums over batches average each batch's kept pixels.
    """
    logits, safe_labels, valid = _prepare(logits, labels)
    nll = _nll(logits, safe_labels)
    # The selection is a choice of pixels, not a function to differentiate.
    prob = jax.lax.stop_gradient(jnp.exp(-nll))
    ranked = jnp.sort(jnp.where(valid, prob, jnp.inf).ravel())
    count = jnp.sum(valid)
    kth = ranked[jnp.clip(jnp.minimum(min_kept, count - 1), 0, None)]
    keep = valid & (prob < jnp.maximum(kth, threshold))
    weights = _pixel_weights(safe_labels, keep, class_weights)
    return jnp.sum(weights * nll), jnp.sum(weights)


def _class_mean(per_class: jax.Array, class_weights: jax.Array | None) -> jax.Array:
    """Mean over the class axis, or ``sum_c w_c x_c / sum_c w_c``."""
    if class_weights is None:
        return jnp.mean(per_class)
    weights = jnp.asarray(class_weights, jnp.float32)
    return jnp.sum(weights * per_class) / jnp.maximum(jnp.sum(weights), EPS)


def focal_terms(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One-vs-all sigmoid focal loss (see the module docstring).

    Returns:
      (sum over valid pixels of the class-averaged focal loss, valid pixels).
    """
    logits, safe_labels, valid = _prepare(logits, labels)
    target = jax.nn.one_hot(safe_labels, logits.shape[-1], dtype=jnp.float32)
    # BCE with logits in torch's stable form: max(x, 0) - x t + log(1 + exp(-|x|)).
    bce = jnp.maximum(logits, 0.0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    # The floor keeps the gradient of (1 - p_t)^gamma finite where p_t rounds to 1 (gamma < 1).
    modulation = jnp.maximum(-jnp.expm1(-bce), jnp.finfo(jnp.float32).tiny) ** gamma
    focal = modulation * bce
    if alpha is not None:
        focal = focal * (alpha * target + (1.0 - alpha) * (1.0 - target))
    if class_weights is None:
        per_pixel = jnp.mean(focal, axis=-1)
    else:
        weights = jnp.asarray(class_weights, jnp.float32)
        per_pixel = focal @ weights / jnp.maximum(jnp.sum(weights), EPS)
    return jnp.sum(jnp.where(valid, per_pixel, 0.0)), jnp.sum(valid.astype(jnp.float32))


def dice_terms(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    *,
    smooth: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Soft Dice loss of the batch (see the module docstring).

    Returns:
      (the batch's Dice loss, 1).
    """
    logits, safe_labels, valid = _prepare(logits, labels)
    mask = valid[..., None].astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1) * mask
    target = jax.nn.one_hot(safe_labels, logits.shape[-1], dtype=jnp.float32) * mask
    axes = tuple(range(probs.ndim - 1))
    intersection = jnp.sum(probs * target, axis=axes)
    target_sum = jnp.sum(target, axis=axes)
    half_sum = 0.5 * (jnp.sum(probs, axis=axes) + target_sum)
    # smp's 1e-7 floor on the denominator.
    dice = (intersection + smooth) / jnp.maximum(half_sum + smooth, 1e-7)
    per_class = jnp.where(target_sum > 0, 1.0 - dice, 0.0)
    return _class_mean(per_class, class_weights), jnp.ones((), jnp.float32)


def lovasz_terms(
    logits: jax.Array, labels: jax.Array, class_weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Lovász-softmax loss of the batch (see the module docstring); `class_weights` is
    accepted for a common signature and not used.

    Returns:
      (the batch's Lovász-softmax loss, 1).
    """
    del class_weights
    logits, safe_labels, valid = _prepare(logits, labels)
    num_classes = logits.shape[-1]
    probs = jax.nn.softmax(logits, axis=-1).reshape(-1, num_classes)
    valid = valid.reshape(-1, 1).astype(jnp.float32)
    fg = jax.nn.one_hot(safe_labels.reshape(-1), num_classes, dtype=jnp.float32) * valid
    # Void pixels get error 0: they sort after every pixel with an error, and add neither
    # to the loss nor (weighted by `valid` below) to the Jaccard counts.
    errors = jnp.abs(fg - probs) * valid
    order = jnp.argsort(-jax.lax.stop_gradient(errors), axis=0)
    errors_sorted = jnp.take_along_axis(errors, order, axis=0)
    fg_sorted = jnp.take_along_axis(fg, order, axis=0)
    valid_sorted = jnp.take_along_axis(jnp.broadcast_to(valid, fg.shape), order, axis=0)
    gts = jnp.sum(fg, axis=0)
    intersection = gts - jnp.cumsum(fg_sorted, axis=0)
    union = gts + jnp.cumsum((1.0 - fg_sorted) * valid_sorted, axis=0)
    jaccard = 1.0 - intersection / jnp.maximum(union, EPS)
    # The Lovász extension's gradient: increments of the Jaccard loss along the sort.
    grad = jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)
    per_class = jnp.sum(errors_sorted * jax.lax.stop_gradient(grad), axis=0)
    present = gts > 0
    loss = jnp.sum(jnp.where(present, per_class, 0.0)) / jnp.maximum(jnp.sum(present), 1)
    return loss, jnp.ones((), jnp.float32)


@dataclasses.dataclass(frozen=True)
class Option:
    """A loss option of `loss.terms`: its default and the values it accepts."""

    default: Any
    minimum: float = -math.inf
    maximum: float = math.inf
    integer: bool = False
    nullable: bool = False

    def accepts(self, value) -> bool:
        if value is None:
            return self.nullable
        kind = int if self.integer else int | float
        return (
            isinstance(value, kind)
            and not isinstance(value, bool)
            and self.minimum <= value <= self.maximum
        )

    def describe(self) -> str:
        """What `accepts` takes, e.g. "a number >= 0 and <= 1, or null"."""
        bounds = [f">= {self.minimum:g}"] if self.minimum > -math.inf else []
        bounds += [f"<= {self.maximum:g}"] if self.maximum < math.inf else []
        text = " ".join(["an integer" if self.integer else "a number", " and ".join(bounds)])
        return text.strip() + (", or null" if self.nullable else "")


@dataclasses.dataclass(frozen=True)
class Loss:
    """A registered loss: its `(logits, labels, class_weights, **options) -> (sum, weight)`
    function, its options, and whether its weight is always `pixel_weight_sum` (the
    denominator the terms share, see `combined_terms`)."""

    terms: Callable[..., tuple[jax.Array, jax.Array]]
    options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    per_pixel_weight: bool = False


# The losses `loss.terms` names; see the module docstring for their definitions.
LOSSES: dict[str, Loss] = {
    "ce": Loss(cross_entropy_terms, per_pixel_weight=True),
    "dice": Loss(dice_terms, {"smooth": Option(0.0, minimum=0.0)}),
    "focal": Loss(
        focal_terms,
        {"gamma": Option(2.0, minimum=0.0), "alpha": Option(None, 0.0, 1.0, nullable=True)},
    ),
    "lovasz": Loss(lovasz_terms),
    "ohem": Loss(
        ohem_terms,
        {
            "threshold": Option(0.7, minimum=0.0, maximum=1.0),
            "min_kept": Option(100_000, minimum=0, integer=True),
        },
    ),
}


@dataclasses.dataclass(frozen=True)
class Term:
    """One term of the loss: a `LOSSES` name, its weight and its options (hashable, so a
    bound loss function can be a static argument)."""

    name: str
    weight: float = 1.0
    options: tuple[tuple[str, Any], ...] = ()

    def __call__(
        self, logits: jax.Array, labels: jax.Array, class_weights: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        """(sum, weight) of the loss on one batch, unweighted by `self.weight`."""
        return LOSSES[self.name].terms(logits, labels, class_weights, **dict(self.options))


DEFAULT_TERMS = (Term("ce"),)


def parse_terms(entries: Sequence[Mapping]) -> tuple[Term, ...]:
    """The `Term`s of the config's `loss.terms`, checked.

    Args:
      entries: a non-empty list of {"name": a `LOSSES` key, "weight": float >= 0 (default
        1), and that loss's options}.

    Raises:
      ConfigError: one line naming the bad entry (its index and loss) and what is wrong.
    """
    if not isinstance(entries, list | tuple) or not entries:
        raise ConfigError(
            f"loss.terms: expected a non-empty list of {{'name': ..., 'weight': ...}}, "
            f"got {entries!r}"
        )
    return tuple(_parse_term(i, entry) for i, entry in enumerate(entries))


def _parse_term(index: int, entry) -> Term:
    where = f"loss.terms[{index}]"
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise ConfigError(f"{where}: expected {{'name': ..., 'weight': ..., ...}}, got {entry!r}")
    name = entry["name"]
    if name not in LOSSES:
        raise ConfigError(f"{where}: unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    where = f"{where} ({name})"
    options = LOSSES[name].options
    for key, value in entry.items():
        if key == "name":
            continue
        option = Option(1.0, minimum=0.0) if key == "weight" else options.get(key)
        if option is None:
            valid = ", ".join(["weight", *options])
            raise ConfigError(f"{where}: unknown option {key!r}; valid: {valid}")
        if not option.accepts(value):
            raise ConfigError(f"{where}: {key} must be {option.describe()}, got {value!r}")
    chosen = {key: entry.get(key, option.default) for key, option in options.items()}
    return Term(name, float(entry.get("weight", 1.0)), tuple(sorted(chosen.items())))


def combined_terms(
    logits: jax.Array,
    labels: jax.Array,
    terms: Sequence[Term],
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The weighted sum of the terms' batch values on one output, as (sum, weight).

    The terms share one denominator, the cross-entropy's (`pixel_weight_sum`: valid pixels,
    class-weighted when there are class weights). ``ce`` enters as its own sum, so its value
    stays exact when sums and weights are added over a split; every other term enters as
    its batch value times the denominator, so over a split it is averaged per batch,
    weighted by the batch's denominator.

    Args:
      logits: [B, H, W, C].
      labels: [B, H, W], `VOID` = no loss.
      terms: the loss terms (`parse_terms`).
      class_weights: [C] or None.

    Returns:
      (sum, weight): scalars that add over batches; the batch's loss is sum / weight.
    """
    denominator = pixel_weight_sum(labels, class_weights)
    total = jnp.zeros((), jnp.float32)
    for term in terms:
        term_sum, term_weight = term(logits, labels, class_weights)
        if not LOSSES[term.name].per_pixel_weight:
            term_sum = term_sum * (denominator / jnp.maximum(term_weight, EPS))
        total = total + term.weight * term_sum
    return total, denominator
