"""A workdir resumes with changed settings unless the model's meaning changed; a finished
run's workdir is a `model.init_from` (its best weights, a fresh optimizer); a disk that
cannot be written stops the run with one line and keeps the earlier checkpoints."""

import errno
import json
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseg import checkpoint, state, trainer
from jaxseg.config import load_config
from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.errors import ConfigError, WorkdirError

TINY = ["data.height=32", "data.width=64", "model.options={'widths': (4, 4)}"]


def _config(*extra):
    return trainer.resolve_labels(
        load_config("baseline", data="/unused", overrides=[*TINY, *extra]),
        type("Dataset", (), {"label_space": IDD_LEVEL3})(),
    )


def test_other_settings_are_logged_and_accepted(tmp_path, caplog):
    trainer.claim_workdir(_config("train.epochs=2"), tmp_path)
    changed = _config("train.epochs=5", "data.workers=0", "train.log_every_steps=3")
    with caplog.at_level(logging.INFO):
        trainer.claim_workdir(changed, tmp_path)
    assert "resuming with train.epochs=5 (was 2)" in caplog.text
    assert "resuming with data.workers=0 (was 2)" in caplog.text
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 5


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.options={'widths': (4, 8)}", "model.options"),
        ("loss.terms=[{'name': 'dice', 'weight': 1.0}]", "loss.terms"),
        ("data.void='ignore'", "data.void"),
        ("model.name='unet'", "model.name"),
    ],
)
def test_a_change_of_the_models_meaning_is_refused(tmp_path, override, key):
    trainer.claim_workdir(_config(), tmp_path)
    with pytest.raises(ConfigError, match=rf"run has {key}=.*; use a new --workdir"):
        trainer.claim_workdir(_config(override), tmp_path)


@pytest.mark.slow
def test_init_from_a_finished_run_takes_its_best_weights_and_a_fresh_optimizer(tmp_path):
    config = _config("seed=1")
    trainer.claim_workdir(config, tmp_path)
    trained = state.create(config, IDD_LEVEL3, image_shape=(1, 32, 64, 3)).state
    trained = trained.replace(
        params=jax.tree.map(lambda x: x + 1.0, trained.params),
        opt_state=jax.tree.map(lambda x: x + 1, trained.opt_state),
    )
    saved = checkpoint.Checkpoints(tmp_path / "checkpoints")
    saved.save(4, state.checkpoint_tree(trained), {}, best=True)
    saved.close()

    tuned = _config(f"model.init_from={tmp_path}")
    fresh = state.create(tuned, IDD_LEVEL3, image_shape=(1, 32, 64, 3)).state
    started = state.with_pretrained(fresh, tuned)
    jax.tree.map(np.testing.assert_array_equal, started.params, trained.params)
    jax.tree.map(np.testing.assert_array_equal, started.opt_state, fresh.opt_state)
    assert int(started.step) == 0


def test_a_full_disk_at_checkpoint_time_is_one_line_and_keeps_earlier_ones(tmp_path, monkeypatch):
    saved = checkpoint.Checkpoints(tmp_path / "checkpoints")
    tree = {"w": np.arange(4.0, dtype=np.float32)}
    saved.save(1, tree, {"step": 1}, best=True)

    def full(self, step, *args, **kwargs):
        # What a full disk does to orbax's write of the temporary folder.
        raise OSError(errno.ENOSPC, "No space left on device", str(self.directory))

    with monkeypatch.context() as patched:
        patched.setattr(ocp.CheckpointManager, "save", full)
        with pytest.raises(WorkdirError, match="cannot write the checkpoint of step 2") as e:
            saved.save(2, {"w": tree["w"] + 1}, {"step": 2}, best=True)
    assert "\n" not in str(e.value) and "the earlier checkpoints are intact" in str(e.value)
    for which in ("latest", "best"):
        state, meta = saved.restore(tree, which=which)
        np.testing.assert_array_equal(state["w"], tree["w"])
        assert meta == {"step": 1}
    saved.close()
