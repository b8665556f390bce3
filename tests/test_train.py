"""End-to-end training on tiny synthetic data: loss goes down, resume is exact, CLI errors."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxseg import checkpoint, train
from jaxseg.config import load_config
from jaxseg.data import synthetic

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


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic.generate(root, train=16, val=6, test=2, height=64, width=128, seed=3)
    return root


def _config(data, *extra):
    return load_config("baseline", data=str(data), overrides=[*TINY, *extra])


def test_training_lowers_loss_and_writes_outputs(tiny_data, tmp_path):
    results = train.train_and_evaluate(_config(tiny_data, "train.epochs=6"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4])
    val_losses = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val_losses) == 6 and val_losses[-1] < val_losses[0]

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk.keys() == {
        "experiment",
        "split",
        "pixel_accuracy",
        "mean_iou",
        "iou",
        "steps",
        "epochs",
        "train_images_per_sec",
    }
    assert on_disk["experiment"] == "baseline" and on_disk["steps"] == 24
    assert len(on_disk["iou"]) == 26
    assert on_disk["pixel_accuracy"] == pytest.approx(results["pixel_accuracy"])
    assert json.loads((tmp_path / "config.json").read_text())["data"]["height"] == 64
    assert (tmp_path / "checkpoints" / "best").is_dir()


def _final_state(workdir, step):
    manager = checkpoint.Checkpoints(workdir / "checkpoints").latest
    import orbax.checkpoint as ocp

    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
    return restored.state


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_reproduces_uninterrupted_run(tiny_data, tmp_path, workers):
    config = _config(tiny_data, "train.epochs=2", f"data.workers={workers}")
    train.train_and_evaluate(config, tmp_path / "straight")
    # Interrupted after 3 steps (mid-epoch: 4 steps per epoch), then resumed twice.
    assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=3) is None
    assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=2) is None
    train.train_and_evaluate(config, tmp_path / "resumed")

    a, b = _final_state(tmp_path / "straight", 8), _final_state(tmp_path / "resumed", 8)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    logged = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in logged if "train_loss" in r] == list(range(1, 9))


def test_train_step_traces_once(tiny_data, tmp_path):
    config = _config(tiny_data)
    model = train.build_model(config)
    lr = train.create_learning_rate(config, 10)
    state = train.create_train_state(
        model, train.create_optimizer(config, lr), jax.random.PRNGKey(0), (4, 64, 128, 3)
    )
    traces = []

    def counted(state, batch):
        traces.append(1)
        return train.train_step(
            state,
            batch,
            loss_fn=lambda o, y: train.segmentation_loss(
                o, y, class_weights=None, void="class", aux_weight=0.5
            ),
        )

    step = jax.jit(counted, donate_argnums=(0,))
    batch = {
        "image": np.zeros((4, 64, 128, 3), np.float32),
        "label": np.zeros((4, 64, 128), np.int32),
    }
    for _ in range(3):
        state, _ = step(state, batch)
    assert len(traces) == 1 and int(state.step) == 3


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxseg.train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_cli_unknown_experiment(tmp_path):
    _assert_one_line_error(_cli("--experiment", "nope", "--workdir", str(tmp_path)), "nope")


def test_cli_unknown_set_key(tmp_path):
    result = _cli("--experiment", "baseline", "--set", "train.epoch=3", "--workdir", str(tmp_path))
    _assert_one_line_error(result, "train.epoch")


def test_cli_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    result = _cli("--experiment", "baseline", "--data", str(missing), "--workdir", str(tmp_path))
    _assert_one_line_error(result, str(missing))


def test_cli_image_without_label(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    label = next((data / "gtFine" / "train").rglob("*_gtFine_labellevel3Ids.png"))
    label.unlink()
    result = _cli("--experiment", "baseline", "--data", str(data), "--workdir", str(tmp_path / "w"))
    _assert_one_line_error(result, label.name.replace("_gtFine_labellevel3Ids.png", ""))


def test_cli_label_id_out_of_range(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    label_path = sorted((data / "gtFine" / "train").rglob("*_gtFine_labellevel3Ids.png"))[0]
    label = np.array(Image.open(label_path))
    label[0, 0] = 40
    Image.fromarray(label).save(label_path)
    result = _cli(
        "--experiment",
        "baseline",
        "--data",
        str(data),
        "--workdir",
        str(tmp_path / "w"),
        *[arg for override in TINY for arg in ("--set", override)],
        "--set",
        "train.epochs=1",
    )
    _assert_one_line_error(result, label_path.name, "40")
