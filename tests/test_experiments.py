"""Every experiment file: its config loads, every registry name in it resolves, and one
train step runs on tiny data (Scenic once shipped a config naming a trainer it lacked)."""

import jax
import numpy as np
import pytest

from jaxseg import class_weights, state, steps
from jaxseg.config import load_config
from jaxseg.data import augment, formats
from jaxseg.data.pipeline import train_dataset
from jaxseg.discovery import experiment_names

# Smallest widths per model family, so one step compiles in seconds.
TINY_MODELS = {
    "fcn": "model.options={'widths': (4, 4, 4, 4, 4)}",
    "unet": "model.options={'base_width': 4}",
    "custom": "model.options={'depth': 2}",
    "deeplabv3_resnet101": "model.name='deeplabv3_tiny'",
}


@pytest.fixture(scope="module")
def train_source(synthetic_data):
    return formats.open_split(synthetic_data(4, 1, 1, 64, 96, 5), "train")


@pytest.mark.parametrize("name", experiment_names())
def test_experiment_config_resolves_and_trains_one_step(name, train_source, tmp_path):
    space = train_source.label_space
    for data in ("synthetic", str(tmp_path)):  # Both the IDD setting and the CPU profile.
        config = load_config(name, data=data)
        state.build_model(config, state.num_outputs(config, space))
        state.create_optimizer(config, state.create_learning_rate(config, 10))
        augment.build_augment(config.data.augment.to_dict())
        assert config.model.dtype in state.DTYPES

    config = load_config(name, data=str(tmp_path))
    overrides = [
        TINY_MODELS[config.model.name],
        "model.init_from=''",
        "data.height=64",
        "data.width=64",
        "loss.class_counts='seed'",
    ]
    if "scale_crop" in config.data.augment:
        overrides.append("data.augment.scale_crop.height=32")
        overrides.append("data.augment.scale_crop.width=32")
    config = load_config(name, data=str(tmp_path), overrides=overrides)
    batch = next(
        iter(
            train_dataset(
                train_source,
                height=64,
                width=64,
                batch_size=2,
                seed=0,
                augment=augment.build_augment(config.data.augment.to_dict()),
            )
        )
    )
    created = state.create(config, space, image_shape=batch["image"].shape, total_updates=10)
    weights = class_weights.for_config(config, tmp_path, space, state.num_outputs(config, space))
    loss_fn = steps.bind_loss(config, space.num_classes, weights)
    train_state, metrics = jax.jit(lambda s, b: steps.train_step(s, b, loss_fn=loss_fn))(
        created.state, batch
    )
    assert int(train_state.step) == 1
    assert np.isfinite(float(metrics["loss"]))
