"""Segmentation metrics exactly as IDD's and Cityscapes' official evaluations.

A confusion matrix is summed over the whole split (never averaged per image); rows are
ground truth over the K classes of the label space, columns the prediction, with one extra
last column counting predictions of void or of no evaluated class (misses for the true
class). Ground-truth void (255, or any id >= K) is ignored. See docs/datasets.md.
"""

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(
    labels: jax.Array,
    predictions: jax.Array,
    num_classes: int,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Confusion matrix of one batch; matrices of batches and devices add up.

    Args:
      labels: [...] int ground truth; values outside [0, num_classes) are void.
      predictions: [...] int predictions; values outside [0, num_classes) count as void.
      num_classes: number of classes K of the label space.
      mask: optional [...] bool, False for padding pixels/examples to leave out.

    Returns:
      [num_classes, num_classes + 1] int32; column ``num_classes`` counts void predictions.
    """
    labels = labels.astype(jnp.int32)
    predictions = predictions.astype(jnp.int32)
    valid = (labels >= 0) & (labels < num_classes)
    if mask is not None:
        valid = valid & mask
    pred_col = jnp.where((predictions >= 0) & (predictions < num_classes), predictions, num_classes)
    index = jnp.where(valid, labels * (num_classes + 1) + pred_col, 0)
    counts = jnp.bincount(
        index.ravel(),
        weights=valid.ravel().astype(jnp.int32),
        length=num_classes * (num_classes + 1),
    )
    return counts.astype(jnp.int32).reshape(num_classes, num_classes + 1)


def metrics_from_confusion(cm: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Pixel accuracy, mean IoU and per-class IoU from a summed confusion matrix.

    IoU_c = TP / (TP + FP + FN); classes with TP + FP + FN == 0 get NaN and are left out of
    the mean. Pixel accuracy = sum(TP) / valid pixels.

    Args:
      cm: [K, K + 1] counts as returned by `confusion_matrix` (summed).
      class_names: K names for the per-class dict.

    Returns:
      {"pixel_accuracy": float, "mean_iou": float, "iou": {name: float}}.
    """
    cm = np.asarray(cm, dtype=np.int64)
    num_classes = cm.shape[0]
    tp = np.diag(cm[:, :num_classes]).astype(np.float64)
    gt_total = cm.sum(axis=1)  # TP + FN, void predictions included as misses.
    pred_total = cm[:, :num_classes].sum(axis=0)  # TP + FP.
    union = gt_total + pred_total - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    valid_pixels = cm.sum()
    present = union > 0
    return {
        "pixel_accuracy": float(tp.sum() / valid_pixels) if valid_pixels else float("nan"),
        "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
        "iou": {name: float(v) for name, v in zip(class_names, iou, strict=True)},
    }
