import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import losses

torch = pytest.importorskip("torch")


def _torch_loss(logits, labels, weights, ignore_index=255):
    loss = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.tensor(weights), ignore_index=ignore_index
    )
    return float(loss(torch.tensor(logits).permute(0, 3, 1, 2), torch.tensor(labels).long()))


@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_cross_entropy_matches_torch(weighted):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 7, 9, 26)).astype(np.float32) * 3
    labels = rng.integers(0, 26, size=(2, 7, 9))
    labels[rng.random(labels.shape) < 0.3] = 255
    weights = rng.uniform(0.1, 2.0, 26).astype(np.float32) if weighted else None
    ours = float(losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), weights))
    assert ours == pytest.approx(_torch_loss(logits, labels, weights), rel=1e-5)


def test_all_ignored_gives_zero_not_nan():
    logits = jnp.zeros((1, 2, 2, 3))
    labels = jnp.full((1, 2, 2), 255)
    assert float(losses.weighted_cross_entropy(logits, labels)) == 0.0


def test_void_as_class_matches_torch_with_27_classes():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 5, 6, 27)).astype(np.float32)
    labels = rng.integers(0, 26, size=(1, 5, 6))
    labels[0, :2] = 255
    mapped = losses.apply_void_policy(jnp.asarray(labels), "class", 26)
    assert int(mapped[0, 0, 0]) == 26
    ours = float(losses.weighted_cross_entropy(jnp.asarray(logits), mapped))
    torch_labels = np.where(labels == 255, 26, labels)
    assert ours == pytest.approx(
        _torch_loss(logits, torch_labels, None, ignore_index=-100), rel=1e-5
    )


def test_unknown_void_policy_raises():
    with pytest.raises(ValueError, match="void policy"):
        losses.num_outputs(26, "drop")
    assert losses.num_outputs(26, "ignore") == 26
    assert losses.num_outputs(26, "class") == 27
