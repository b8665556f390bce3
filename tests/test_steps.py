"""The pure steps: traced once, one loss entry point for training and validation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import losses, state, steps
from jaxseg.config import load_config
from jaxseg.data.labels import IDD_LEVEL1, IDD_LEVEL3

TINY = [
    "data.height=64",
    "data.width=128",
    "model.options={'widths': (8, 16, 16, 16, 16)}",
]


def _created(label_space=IDD_LEVEL3, batch=4):
    config = load_config("baseline", data="/unused", overrides=TINY)
    return config, state.create(config, label_space, image_shape=(batch, 64, 128, 3))


def test_train_step_traces_once():
    config, created = _created()
    traces = []
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)

    def counted(train_state, batch):
        traces.append(1)
        return steps.train_step(train_state, batch, loss_fn=loss_fn)

    step = jax.jit(counted, donate_argnums=(0,))
    batch = {
        "image": np.zeros((4, 64, 128, 3), np.float32),
        "label": np.zeros((4, 64, 128), np.int32),
    }
    train_state = created.state
    for _ in range(3):
        train_state, _ = step(train_state, batch)
    assert len(traces) == 1 and int(train_state.step) == 3


def test_model_outputs_follow_the_label_space_and_void_policy():
    config, created = _created(IDD_LEVEL1)
    assert config.data.void == "class"
    logits = created.model.apply(
        {"params": created.state.params, "batch_stats": created.state.batch_stats},
        jnp.zeros((1, 64, 128, 3)),
        train=False,
    )
    assert logits.shape == (1, 64, 128, IDD_LEVEL1.num_classes + 1)


def test_loss_terms_under_void_class_leave_masked_pixels_out():
    """Padding examples (mask False) carry no loss, even where void is a class."""
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 3, 4, 8)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7, (2, 3, 4)))
    labels = labels.at[0, 0].set(255)
    terms = functools.partial(
        steps.loss_terms, num_classes=7, void="class", class_weights=None, aux_weight=0.5
    )
    mask = jnp.broadcast_to(jnp.array([True, False])[:, None, None], labels.shape)
    masked_sum, masked_weight = terms({"out": logits}, labels, mask=mask)
    first_sum, first_weight = terms({"out": logits[:1]}, labels[:1])
    assert float(masked_weight) == 12.0 == float(first_weight)  # Void (class 7) included.
    assert float(masked_sum) == pytest.approx(float(first_sum), rel=1e-6)
    # By hand: void pixels count as class 7.
    expected = losses.weighted_cross_entropy(
        logits[:1], jnp.where(labels[:1] == 255, 7, labels[:1])
    )
    assert float(steps.mean_loss((first_sum, first_weight))) == pytest.approx(
        float(expected), rel=1e-6
    )


def test_aux_head_adds_its_weighted_loss():
    rng = np.random.default_rng(1)
    out, aux = (jnp.asarray(rng.normal(size=(1, 3, 3, 5)), jnp.float32) for _ in range(2))
    labels = jnp.asarray(rng.integers(0, 5, (1, 3, 3)))
    loss = steps.mean_loss(
        steps.loss_terms(
            {"out": out, "aux": aux},
            labels,
            num_classes=5,
            void="ignore",
            class_weights=None,
            aux_weight=0.25,
        )
    )
    expected = losses.weighted_cross_entropy(out, labels) + 0.25 * (
        losses.weighted_cross_entropy(aux, labels)
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
