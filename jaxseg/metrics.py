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
    """Every metric of a split from its summed confusion matrix, computed in int64/float64.

    With per class c: TP_c (the diagonal), G_c = TP_c + FN_c ground-truth pixels (row sum,
    void predictions included as misses), P_c = TP_c + FP_c predictions of c (column sum):

    - IoU_c = TP_c / (G_c + P_c - TP_c); NaN when the class is in neither ground truth nor
      predictions. mean IoU: the mean over the other classes.
    - accuracy_c = TP_c / G_c (recall); NaN when the class is absent from the ground truth.
      mean accuracy: the mean over classes present in the ground truth.
    - Dice_c = F1_c = 2 TP_c / (G_c + P_c); NaN where IoU is.
    - pixel accuracy = sum(TP) / sum(G).
    - frequency-weighted IoU = sum_c G_c IoU_c / sum(G), over classes present in the ground
      truth (FCN, Long et al. 2015).

    Args:
      cm: [K, K + 1] counts as returned by `confusion_matrix` (summed).
      class_names: K names for the per-class dicts.

    Returns:
      {"pixel_accuracy", "mean_iou", "mean_accuracy", "fw_iou": float, "iou", "accuracy",
      "dice": {name: float}, "confusion": [K][K + 1] list of int}.
    """
    cm = np.asarray(cm, dtype=np.int64)
    num_classes = cm.shape[0]
    tp = np.diag(cm[:, :num_classes]).astype(np.float64)
    gt_total = cm.sum(axis=1)  # TP + FN, void predictions included as misses.
    pred_total = cm[:, :num_classes].sum(axis=0)  # TP + FP.
    union = gt_total + pred_total - tp
    present = union > 0
    in_gt = gt_total > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    accuracy = np.where(in_gt, tp / np.maximum(gt_total, 1), np.nan)
    dice = np.where(present, 2 * tp / np.maximum(gt_total + pred_total, 1), np.nan)
    valid_pixels = gt_total.sum()

    def mean(values: np.ndarray, where: np.ndarray) -> float:
        return float(values[where].mean()) if where.any() else float("nan")

    def per_class(values: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(class_names, values, strict=True)}

    return {
        "pixel_accuracy": float(tp.sum() / valid_pixels) if valid_pixels else float("nan"),
        "mean_iou": mean(iou, present),
        "mean_accuracy": mean(accuracy, in_gt),
        "fw_iou": float((gt_total[in_gt] * iou[in_gt]).sum() / valid_pixels)
        if valid_pixels
        else float("nan"),
        "iou": per_class(iou),
        "accuracy": per_class(accuracy),
        "dice": per_class(dice),
        "confusion": cm.tolist(),
    }
