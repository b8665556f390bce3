"""Transfer learning: start from converted torchvision weights, frozen backbone."""

import functools

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseg import convert, train
from jaxseg.config import load_config
from jaxseg.data import synthetic


def _tiny_state(config, frozen=True):
    model = train.build_model(config)
    assert train.frozen_params(model) == (("backbone",) if frozen else ())
    tx = train.create_optimizer(config, train.create_learning_rate(config, 10), ("backbone",))
    return train.create_train_state(model, tx, jax.random.PRNGKey(0), (2, 48, 64, 3))


def test_frozen_backbone_params_and_statistics_do_not_change():
    config = load_config(
        "transfer",
        overrides=[
            "model.name=deeplabv3_tiny",
            "model.init_from=''",
            "optimizer.learning_rate=0.05",
        ],
    )
    state = _tiny_state(config)
    start = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    loss_fn = functools.partial(
        train.segmentation_loss, class_weights=None, void="class", aux_weight=0.5
    )
    step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = {
            "image": rng.normal(size=(2, 48, 64, 3)).astype(np.float32),
            "label": rng.integers(0, 27, size=(2, 48, 64)).astype(np.int32),
        }
        state, _ = step(state, batch)
    end = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})

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


def test_train_from_converted_torchvision_weights(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    synthetic.generate(data, train=4, val=4, test=1, height=32, width=48, seed=1)
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
    results = train.train_and_evaluate(config, tmp_path / "run")
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
