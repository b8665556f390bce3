"""End-to-end training on tiny synthetic data: loss goes down, resume is exact, CLI errors."""

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from jaxseg import checkpoint, trainer
from jaxseg.config import load_config
from jaxseg.trainer import train_and_evaluate

pytestmark = pytest.mark.slow

TINY = [
    "data.height=64",
    "data.width=128",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "model.options={'widths': (8, 16, 16, 16, 16)}",
    "optimizer.learning_rate=0.01",
    "train.log_every_steps=1",
]


def _config(data, *extra):
    return load_config("baseline", data=str(data), overrides=[*TINY, *extra])


def test_training_lowers_loss_and_writes_outputs(tiny_data, tmp_path):
    results = train_and_evaluate(_config(tiny_data, "train.epochs=6"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == 24
    # The share of each logged window spent waiting for the prefetching thread's batches.
    waits = [r["data_wait"] for r in records if "train_loss" in r]
    assert all(0.0 <= w <= 1.0 for w in waits)
    assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4])
    val_losses = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val_losses) == 6 and val_losses[-1] < val_losses[0]

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk.keys() == {
        "experiment",
        "split",
        "data",
        "labels",
        "pixel_accuracy",
        "mean_iou",
        "iou",
        "mean_accuracy",
        "fw_iou",
        "accuracy",
        "dice",
        "confusion",
        "steps",
        "epochs",
        "train_images_per_sec",
        "eval",
    }
    assert on_disk["eval"] == {"mode": "resize", "flip": False, "scales": [1.0]}
    assert on_disk["experiment"] == "baseline" and on_disk["steps"] == 24
    assert on_disk["labels"] == "idd_level3" and on_disk["data"] == str(tiny_data)
    assert len(on_disk["iou"]) == 26
    assert on_disk["pixel_accuracy"] == pytest.approx(results["pixel_accuracy"])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["data"]["height"] == 64 and saved["data"]["labels"] == "idd_level3"
    assert (tmp_path / "checkpoints" / "best").is_dir()


def test_eval_every_epochs_validates_and_checkpoints_those_epochs_and_the_last(
    tiny_data, tmp_path, monkeypatch
):
    saved_steps = []
    save = checkpoint.Checkpoints.save

    def recording_save(self, step, *args, **kwargs):
        saved_steps.append(step)
        save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpoints, "save", recording_save)
    config = _config(tiny_data, "train.epochs=3", "train.eval_every_epochs=2")
    results = train_and_evaluate(config, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # 4 steps an epoch: epoch 2 (a multiple) and epoch 3 (the last); epoch 1 is skipped.
    assert [r["epoch"] for r in records if "val_loss" in r] == [2, 3]
    assert sorted(set(saved_steps)) == [8, 12]
    assert results["steps"] == 12


@pytest.mark.parametrize(
    ("val_mean_ious", "best_epoch"), [((0.3, 0.5, 0.4), 2), ((0.3, 0.4, 0.5), 3)]
)
def test_results_are_the_best_checkpoints(
    tiny_data, tmp_path, monkeypatch, val_mean_ious, best_epoch
):
    """The val mIoU each epoch sees is rigged so that the best epoch is known; results.json
    holds that epoch's metrics. When it was the last epoch, the state in hand is the best one
    and its validation is reused: no restore, no fourth validation."""
    rigged = iter(val_mean_ious)
    validate = trainer.Loop.validate

    def rigged_validate(self):
        calls.append("validate")
        metrics = validate(self)
        return {**metrics, "mean_iou": next(rigged, metrics["mean_iou"])}

    restore = checkpoint.Checkpoints.restore

    def recording_restore(self, *args, which="latest", **kwargs):
        calls.append(f"restore {which}")
        return restore(self, *args, which=which, **kwargs)

    calls = []
    monkeypatch.setattr(trainer.Loop, "validate", rigged_validate)
    monkeypatch.setattr(checkpoint.Checkpoints, "restore", recording_restore)
    results = train_and_evaluate(_config(tiny_data, "train.epochs=3"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = next(r for r in records if r.get("epoch") == best_epoch and "val_loss" in r)
    assert results["pixel_accuracy"] == pytest.approx(best["val_pixel_accuracy"], abs=1e-7)
    assert results["steps"] == 12
    if best_epoch == 3:
        assert calls.count("validate") == 3 and "restore best" not in calls
        assert results["mean_iou"] == 0.5
    else:
        assert calls.count("validate") == 4 and "restore best" in calls


@pytest.fixture(scope="module")
def straight_run(tiny_data, tmp_path_factory):
    """Two epochs without interruption, read in the main process (no worker processes)."""
    workdir = tmp_path_factory.mktemp("straight")
    train_and_evaluate(_config(tiny_data, "train.epochs=2", "data.workers=0"), workdir)
    return workdir


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_reproduces_uninterrupted_run(
    tiny_data, tmp_path, workers, final_state, straight_run
):
    # The same run whatever the number of reading processes.
    config = _config(tiny_data, "train.epochs=2", f"data.workers={workers}")
    # Interrupted after 3 steps (mid-epoch: 4 steps per epoch), then resumed twice.
    assert train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=3) is None
    assert train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=2) is None
    train_and_evaluate(config, tmp_path / "resumed")

    a, b = final_state(straight_run, 8), final_state(tmp_path / "resumed", 8)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    logged = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in logged if "train_loss" in r] == list(range(1, 9))


def _cli(run_module, *args):
    return run_module("jaxseg.train", *args)


def test_cli_unknown_experiment(tmp_path, run_module, assert_one_line_error):
    result = _cli(run_module, "--experiment", "nope", "--workdir", tmp_path)
    assert_one_line_error(result, "nope", "baseline")


def test_cli_unknown_set_key(tmp_path, run_module, assert_one_line_error):
    result = _cli(
        run_module, "--experiment", "baseline", "--set", "train.epoch=3", "--workdir", tmp_path
    )
    assert_one_line_error(result, "train.epoch")


def test_cli_missing_data_folder(tmp_path, run_module, assert_one_line_error):
    missing = tmp_path / "nowhere"
    result = _cli(run_module, "--experiment", "baseline", "--data", missing, "--workdir", tmp_path)
    assert_one_line_error(result, str(missing))


def test_cli_image_without_label(tiny_data, tmp_path, run_module, assert_one_line_error):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    label = next((data / "gtFine" / "train").rglob("*_gtFine_labellevel3Ids.png"))
    label.unlink()
    result = _cli(
        run_module, "--experiment", "baseline", "--data", data, "--workdir", tmp_path / "w"
    )
    assert_one_line_error(result, label.name.replace("_gtFine_labellevel3Ids.png", ""))


def test_cli_label_id_out_of_range(tiny_data, tmp_path, run_module, assert_one_line_error):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    label_path = sorted((data / "gtFine" / "train").rglob("*_gtFine_labellevel3Ids.png"))[0]
    label = np.array(Image.open(label_path))
    label[0, 0] = 40
    Image.fromarray(label).save(label_path)
    result = _cli(
        run_module,
        "--experiment",
        "baseline",
        "--data",
        data,
        "--workdir",
        tmp_path / "w",
        *[arg for override in TINY for arg in ("--set", override)],
        "--set",
        "train.epochs=1",
    )
    assert_one_line_error(result, label_path.name, "40")
