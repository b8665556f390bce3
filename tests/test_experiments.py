"""Every experiment file: its config loads, every registry name in it resolves, and one
train step runs on tiny data (Scenic once shipped a config naming a trainer it lacked)."""

import functools

import jax
import numpy as np
import pytest

import experiments
from jaxseg import train
from jaxseg.config import load_config
from jaxseg.data import augment
from jaxseg.data.pipeline import train_dataset

# Smallest widths per model family, so one step compiles in seconds.
TINY_MODELS = {
    "fcn": "model.options={'widths': (4, 4, 4, 4, 4)}",
    "unet": "model.options={'base_width': 4}",
    "custom": "model.options={'depth': 2}",
    "deeplabv3_resnet101": "model.name='deeplabv3_tiny'",
}


@pytest.fixture(scope="module")
def one_image_source(tmp_path_factory):
    from jaxseg.data import synthetic

    root = tmp_path_factory.mktemp("exp") / "data"
    synthetic.generate(root, train=4, val=1, test=1, height=64, width=96, seed=5)
    from jaxseg.data.sources import open_split

    return open_split(root, "train")


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_experiment_config_resolves_and_trains_one_step(name, one_image_source, tmp_path):
    for data in ("synthetic", str(tmp_path)):  # Both the IDD setting and the CPU profile.
        config = load_config(name, data=data)
        train.build_model(config)
        train.create_optimizer(config, train.create_learning_rate(config, 10))
        augment.build_augment(config.data.augment.to_dict())
        assert config.model.dtype in train.DTYPES

    config = load_config(name, data=str(tmp_path))
    model_name = config.model.name
    overrides = [
        TINY_MODELS[model_name],
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
                one_image_source,
                height=64,
                width=64,
                batch_size=2,
                seed=0,
                augment=augment.build_augment(config.data.augment.to_dict()),
            )
        )
    )
    model = train.build_model(config)
    lr = train.create_learning_rate(config, 10)
    state = train.create_train_state(
        model,
        train.create_optimizer(config, lr, train.frozen_params(model)),
        jax.random.PRNGKey(0),
        batch["image"].shape,
    )
    loss_fn = functools.partial(
        train.segmentation_loss,
        class_weights=train.class_weights_for(config, tmp_path),
        void=config.data.void,
        aux_weight=config.loss.aux_weight,
    )
    state, metrics = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))(state, batch)
    assert int(state.step) == 1
    assert np.isfinite(float(metrics["loss"]))
