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


def test_accuracy_dice_and_frequency_weighted_iou_by_hand():
    # Rows: ground truth a, b, c (c absent); columns: predicted a, b, c, void.
    cm = np.array([[6, 2, 0, 2], [1, 3, 1, 0], [0, 0, 0, 0]])
    result = metrics.metrics_from_confusion(cm, ("a", "b", "c"))
    # a: TP 6 of 10 ground-truth pixels, predicted 7 times; b: TP 3 of 5, predicted 5 times;
    # c: predicted once, never in the ground truth.
    assert result["accuracy"]["a"] == 0.6 and result["accuracy"]["b"] == 0.6
    assert np.isnan(result["accuracy"]["c"])
    assert result["mean_accuracy"] == pytest.approx(0.6)  # c is left out.
    iou_a, iou_b = 6 / (10 + 7 - 6), 3 / (5 + 5 - 3)
    assert result["iou"] == {"a": pytest.approx(iou_a), "b": pytest.approx(iou_b), "c": 0.0}
    assert result["dice"] == {"a": pytest.approx(12 / 17), "b": 0.6, "c": 0.0}
    assert result["fw_iou"] == pytest.approx((10 * iou_a + 5 * iou_b) / 15)
    assert result["pixel_accuracy"] == pytest.approx(9 / 15)
    assert result["confusion"] == cm.tolist()
    assert all(type(v) is int for row in result["confusion"] for v in row)


def test_an_empty_split_gives_nan_not_an_error():
    result = metrics.metrics_from_confusion(np.zeros((2, 3), np.int64), ("a", "b"))
    for key in ("pixel_accuracy", "mean_iou", "mean_accuracy", "fw_iou"):
        assert np.isnan(result[key]), key


def test_evaluation_counts_stay_exact_past_int32():
    """Per-batch int32 matrices near 2^31 per cell add up exactly (int64 on the host)."""
    from jaxseg import evaluation, parallel
    from jaxseg.data.labels import IDD_LEVEL1

    k = IDD_LEVEL1.num_classes
    big = np.iinfo(np.int32).max
    per_batch = [np.full((k, k + 1), big - i, np.int32) for i in range(3)]
    per_batch[1][0, 1] = 5

    def eval_step(_, batch):
        i = int(batch["index"][0])
        return {
            "confusion": jnp.asarray(per_batch[i]),
            "loss_sum": jnp.float32(2.0 ** (i + 1)),
            "weight_sum": jnp.float32(1.0),
        }

    strategy = parallel.create(num_devices=1)
    batches = [{"index": np.array([i]), "mask": np.array([True]), "name": ["x"]} for i in range(3)]
    result = evaluation.evaluate(eval_step, None, batches, strategy, IDD_LEVEL1)
    expected = sum(m.astype(np.int64) for m in per_batch)
    assert expected.max() > 2**32
    np.testing.assert_array_equal(np.array(result["confusion"], np.int64), expected)
    tp = np.trace(expected[:, :k])
    assert result["pixel_accuracy"] == pytest.approx(tp / expected.sum(), rel=1e-12)
    assert result["loss"] == pytest.approx((2 + 4 + 8) / 3)
