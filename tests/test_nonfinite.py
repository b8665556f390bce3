"""Non-finite losses or gradients: the update is left out inside the jitted step, and the
loop skips (logging the steps) or stops as `train.on_nan` says."""

import json
import logging
import types

import jax
import numpy as np
import pytest

from jaxseg import state, steps, trainer
from jaxseg.config import load_config
from jaxseg.data import transforms
from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.errors import TrainingError

TINY = [
    "data.height=32",
    "data.width=64",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "model.options={'widths': (4, 4)}",
    "train.log_every_steps=3",
    "train.tensorboard_images=0",
]


def _batch(seed: int, poisoned: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(4, 32, 64, 3)).astype(np.float32)
    if poisoned:
        image[1, 5, 7, 0] = np.nan
    return {"image": image, "label": rng.integers(0, 26, (4, 32, 64)).astype(np.int32)}


def test_a_nonfinite_step_is_as_if_its_batch_were_absent():
    config = load_config("baseline", data="/unused", overrides=TINY)
    created = state.create(config, IDD_LEVEL3, image_shape=(4, 32, 64, 3))
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)
    step = jax.jit(lambda s, b: steps.train_step(s, b, loss_fn=loss_fn))
    start = created.state
    skipped, metrics = step(start, _batch(0, poisoned=True))
    assert not bool(metrics["finite"]) and int(skipped.step) == 1
    for name in ("params", "opt_state", "batch_stats"):
        jax.tree.map(np.testing.assert_array_equal, getattr(skipped, name), getattr(start, name))
    after_skip, metrics = step(skipped, _batch(1))
    direct, _ = step(start, _batch(1))
    assert bool(metrics["finite"])
    jax.tree.map(np.testing.assert_array_equal, after_skip.params, direct.params)
    assert not np.array_equal(
        after_skip.params["classifier"]["kernel"], start.params["classifier"]["kernel"]
    )


class Poisoned:
    """Train batches as normalised float images, with a NaN pixel in the chosen steps."""

    def __init__(self, iterator, steps: set[int]):
        self.iterator, self.steps, self.count = iterator, steps, 0

    def __next__(self) -> dict:
        batch = next(self.iterator)
        self.count += 1
        image = (batch["image"] / 255.0 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
        image = image.astype(np.float32)
        if self.count in self.steps:
            image[0, 3, 3, 1] = np.nan
        return {**batch, "image": image}

    def get_state(self):
        return self.iterator.get_state()

    def set_state(self, iterator_state) -> None:
        self.iterator.set_state(iterator_state)


@pytest.mark.slow
def test_poisoned_batches_are_skipped_logged_and_the_model_stays_finite(
    synthetic_data, tmp_path, caplog
):
    data = synthetic_data(16, 4, 1, 32, 64, 3)
    config = load_config("baseline", data=str(data), overrides=[*TINY, "train.epochs=2"])
    loop = trainer.prepare(config, tmp_path)
    poisoned = {2, 3, 7}
    loop.train_iter = Poisoned(loop.train_iter, poisoned)
    try:
        with caplog.at_level(logging.WARNING):
            assert trainer.run_steps(loop) == 8
    finally:
        loop.checkpoints.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [s for r in records for s in r.get("train_skipped_steps", [])]
    assert skipped == [2, 3, 7] and loop.nonfinite == {"in_a_row": 0, "skipped": 3}
    assert (
        "non-finite loss or gradients at step 7 (epoch 2, batch 3): update skipped" in caplog.text
    )
    # Steps 2 and 3 share the window ending at step 3: its loss is step 1's alone.
    assert all(np.isfinite(r["train_loss"]) for r in records if "train_loss" in r)
    host = loop.strategy.host_state(loop.state)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(host.params))
    assert int(host.step) == 8


def _loop(on_nan: str, limit: int):
    config = types.SimpleNamespace(on_nan=on_nan, max_skipped_in_a_row=limit)
    return types.SimpleNamespace(
        steps_per_epoch=4,
        config=types.SimpleNamespace(train=config),
        nonfinite={"in_a_row": 0, "skipped": 0},
    )


def _records(*finite: bool) -> list[dict]:
    return [{"loss": 1.0, "grad_norm": 1.0, "finite": f} for f in finite]


def test_on_nan_stop_names_the_step():
    with pytest.raises(TrainingError, match=r"at step 6 \(epoch 2, batch 2\); the model keeps"):
        trainer._check_finite(_loop("stop", 10), _records(True, False), 5)


def test_on_nan_skip_stops_after_too_many_in_a_row():
    loop = _loop("skip", 3)
    assert trainer._check_finite(loop, _records(False, False, True, False, False), 1) == [
        1,
        2,
        4,
        5,
    ]
    with pytest.raises(TrainingError, match=r"at step 6 \(epoch 2, batch 2\), 3 in a row"):
        trainer._check_finite(loop, _records(False), 6)
