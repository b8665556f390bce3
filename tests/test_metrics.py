import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import metrics
from jaxseg.data.labels import IDD_LEVEL3

CLASS_NAMES = IDD_LEVEL3.class_names


def _reference(labels, predictions, num_classes=26):
    """Straightforward NumPy version of IDD's evaluation, written independently of
    jaxseg.metrics."""
    labels, predictions = labels.ravel(), predictions.ravel()
    valid = (labels != 255) & (labels != 26)
    ious, tp_total = [], 0
    for c in range(num_classes):
        tp = np.sum(valid & (labels == c) & (predictions == c))
        fp = np.sum(valid & (labels != c) & (predictions == c))
        fn = np.sum(valid & (labels == c) & (predictions != c))
        tp_total += tp
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    ious = np.array(ious)
    return tp_total / valid.sum(), np.nanmean(ious), ious


def test_matches_numpy_reference_with_void_and_absent_classes():
    rng = np.random.default_rng(0)
    # Classes 20..25 never occur in labels; 24, 25 never predicted either.
    labels = rng.integers(0, 20, size=(3, 17, 23))
    labels[rng.random(labels.shape) < 0.1] = 255
    labels[rng.random(labels.shape) < 0.05] = 26  # Void as IDD's evaluation stores it.
    predictions = rng.integers(0, 24, size=labels.shape)
    predictions[rng.random(labels.shape) < 0.05] = 26  # Void predictions are misses.

    cm = sum(
        np.asarray(
            metrics.confusion_matrix(jnp.asarray(labels[i]), jnp.asarray(predictions[i]), 26)
        )
        for i in range(3)
    )
    result = metrics.metrics_from_confusion(cm, CLASS_NAMES)
    pa, miou, ious = _reference(labels, predictions)

    assert result["pixel_accuracy"] == pytest.approx(pa, rel=1e-12)
    assert result["mean_iou"] == pytest.approx(miou, rel=1e-12)
    got = np.array([result["iou"][name] for name in CLASS_NAMES])
    np.testing.assert_allclose(got, ious, rtol=1e-12)
    assert np.isnan(got[24]) and np.isnan(got[25])
    assert got[21] == 0.0  # Predicted but never present: IoU 0, counted in the mean.


def test_hand_computed_case():
    labels = jnp.array([[0, 1, 255], [26, 2, 2]])
    predictions = jnp.array([[0, 2, 3], [1, 26, 2]])
    cm = np.asarray(metrics.confusion_matrix(labels, predictions, num_classes=3))
    result = metrics.metrics_from_confusion(cm, ("a", "b", "c"))
    # a: TP 1. b: FN 1 (predicted c). c: TP 1, FP 1 (from b), FN 1 (void prediction).
    assert result["iou"] == {"a": 1.0, "b": 0.0, "c": pytest.approx(1 / 3)}
    assert result["pixel_accuracy"] == 0.5
    assert result["mean_iou"] == pytest.approx((1 + 0 + 1 / 3) / 3)


def test_mask_excludes_padding():
    labels = jnp.zeros((2, 4, 4), jnp.int32)
    predictions = jnp.zeros((2, 4, 4), jnp.int32).at[1].set(5)
    mask = jnp.broadcast_to(jnp.array([True, False])[:, None, None], labels.shape)
    cm = metrics.confusion_matrix(labels, predictions, 26, mask)
    assert int(cm.sum()) == 16
    assert metrics.metrics_from_confusion(np.asarray(cm), CLASS_NAMES)["pixel_accuracy"] == 1.0
