"""Transfer learning: start from converted torchvision weights, frozen backbone."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseg import convert, state, steps
from jaxseg.config import load_config
from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.errors import JaxsegError
from jaxseg.trainer import train_and_evaluate


def _tiny_state(config):
    created = state.create(config, IDD_LEVEL3, image_shape=(2, 48, 64, 3), total_updates=10)
    assert state.frozen_params(created.model) == ("backbone",)
    return created.state


def test_frozen_backbone_params_and_statistics_do_not_change():
    config = load_config(
        "transfer",
        overrides=[
            "model.name=deeplabv3_tiny",
            "model.init_from=''",
            "optimizer.learning_rate=0.05",
        ],
    )
    train_state = _tiny_state(config)
    start = jax.device_get({"params": train_state.params, "batch_stats": train_state.batch_stats})
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)
    step = jax.jit(lambda s, b: steps.train_step(s, b, loss_fn=loss_fn))
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = {
            "image": rng.normal(size=(2, 48, 64, 3)).astype(np.float32),
            "label": rng.integers(0, 27, size=(2, 48, 64)).astype(np.int32),
        }
        train_state, _ = step(train_state, batch)
    end = jax.device_get({"params": train_state.params, "batch_stats": train_state.batch_stats})

    for collection in ("params", "batch_stats"):
        jax.tree.map(
            np.testing.assert_array_equal,
            start[collection]["backbone"],
            end[collection]["backbone"],
        )
    for head in ("classifier_0", "classifier_4", "aux_classifier_4"):
        changed = jax.tree.map(
            lambda a, b: bool(np.any(a != b)), start["params"][head], end["params"][head]
        )
        assert all(jax.tree.leaves(changed)), head
    assert np.any(
        start["batch_stats"]["classifier_2"]["mean"] != end["batch_stats"]["classifier_2"]["mean"]
    )


@pytest.mark.slow
def test_train_from_converted_torchvision_weights(tmp_path, monkeypatch, synthetic_data):
    pytest.importorskip("torchvision")
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    data = synthetic_data(4, 4, 1, 32, 48, 1)
    config = load_config(
        "transfer",
        data=str(data),
        overrides=[
            "model.name=deeplabv3_resnet50",
            "model.init_from=random_torchvision",
            "data.height=32",
            "data.width=48",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.workers=0",
            "train.epochs=1",
        ],
    )
    results = train_and_evaluate(config, tmp_path / "run")
    assert results["steps"] == 1

    converted = convert.load_converted(tmp_path / "cache" / "random-torchvision-deeplabv3_resnet50")
    manager = ocp.CheckpointManager((tmp_path / "run" / "checkpoints" / "latest").absolute())
    trained = manager.restore(
        1, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    ).state
    # The frozen backbone is exactly torchvision's; the 27-class heads are new and trained.
    jax.tree.map(
        np.testing.assert_array_equal,
        converted["params"]["backbone"],
        jax.device_get(trained["params"]["backbone"]),
    )
    jax.tree.map(
        np.testing.assert_array_equal,
        converted["batch_stats"]["backbone"],
        jax.device_get(trained["batch_stats"]["backbone"]),
    )
    assert converted["params"]["classifier_4"]["kernel"].shape[-1] == 21
    assert trained["params"]["classifier_4"]["kernel"].shape[-1] == 27


def test_init_from_names_converted_weights_or_fails_up_front(tmp_path, monkeypatch):
    """`torchvision:ARCH` is the cache folder `jaxseg.convert` writes by default; a folder
    without converted weights is one clear error, before any training."""
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(JaxsegError, match="weights/deeplabv3_resnet101 holds no converted"):
        convert.init_from_path("torchvision:deeplabv3_resnet101", "deeplabv3_resnet101")
    with pytest.raises(JaxsegError, match="nowhere holds no converted weights"):
        convert.init_from_path(str(tmp_path / "nowhere"), "deeplabv3_resnet101")
    assert convert.init_from_path("", "fcn") is None
