"""Pure loss functions of arrays."""

import jax
import jax.numpy as jnp

from jaxseg.data.labels import VOID

VOID_POLICIES = ("ignore", "class")


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
    return weighted_nll_sum / jnp.maximum(weight_sum, 1e-12)


def cross_entropy_terms(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    ignore_index: int = VOID,
) -> tuple[jax.Array, jax.Array]:
    """Numerator and denominator of `weighted_cross_entropy`; both add over batches."""
    logits = logits.astype(jnp.float32)
    valid = labels != ignore_index
    safe_labels = jnp.where(valid, labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    weights = valid.astype(jnp.float32)
    if class_weights is not None:
        weights = weights * jnp.asarray(class_weights, jnp.float32)[safe_labels]
    return jnp.sum(weights * nll), jnp.sum(weights)
