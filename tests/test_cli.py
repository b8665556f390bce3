"""The command-line tools on finished tiny runs: evaluate, predict and score agree, on IDD
level 3, IDD level 1 (from the same level-3 files) and a Cityscapes-layout dataset."""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxseg.config import load_config
from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL1
from jaxseg.trainer import train_and_evaluate

pytestmark = pytest.mark.slow

TINY = [
    "data.height=64",
    "data.width=96",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "model.options={'widths': (8, 8, 8, 8, 8)}",
    "train.epochs=2",
    "optimizer.learning_rate=0.01",
]


def _train(data, workdir, *extra):
    config = load_config("baseline", data=str(data), overrides=[*TINY, *extra])
    train_and_evaluate(config, workdir)
    return data, workdir


@pytest.fixture(scope="module")
def finished_run(synthetic_data, tmp_path_factory):
    data = synthetic_data(8, 5, 2, 64, 96, 7)
    return _train(data, tmp_path_factory.mktemp("cli") / "run")


@pytest.fixture(scope="module")
def run_module_ok(run_module):
    def run(module, *args):
        result = run_module(module, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


def test_run_writes_report(finished_run):
    _, run = finished_run
    report_dir = run / "report"
    for name in ("loss.png", "accuracy.png", "class_iou.png", "confusion.png", "report.md"):
        assert (report_dir / name).is_file(), name
    overlays = list(report_dir.glob("overlay_*.png"))
    assert len(overlays) == 1
    assert Image.open(overlays[0]).size[0] > 96


def _evaluate_predict_score(run_module_ok, data, run, tmp_path, *eval_args):
    """Evaluates, predicts the val images and scores them; returns (eval, score) records
    and the prediction files."""
    evaluated = run_module_ok("jaxseg.evaluate", "--workdir", run, "--split", "val", *eval_args)
    assert "mIoU" in evaluated.stdout
    eval_results = json.loads((run / "eval_val.json").read_text())
    # The final val pass of training scored the same checkpoint on the same split.
    train_results = json.loads((run / "results.json").read_text())
    assert eval_results["mean_iou"] == pytest.approx(train_results["mean_iou"], rel=1e-9)
    assert eval_results["confusion"] == train_results["confusion"]

    predictions = tmp_path / "pred"
    run_module_ok(
        "jaxseg.predict",
        "--workdir",
        run,
        "--images",
        data / "leftImg8bit" / "val",
        "--out",
        predictions,
    )
    pred_files = sorted(predictions.rglob("*_pred.png"))
    assert len(pred_files) == 5 and len(list(predictions.rglob("*_overlay.jpg"))) == 5
    label = next((data / "gtFine" / "val").rglob("*.png"))
    assert Image.open(pred_files[0]).size == Image.open(label).size

    score_json = tmp_path / "score.json"
    labels = ["--labels", train_results["labels"]]
    run_module_ok(
        "jaxseg.score",
        "--pred",
        predictions,
        "--gt",
        data / "gtFine" / "val",
        "--json",
        score_json,
        *(labels if train_results["labels"] == "idd_level1" else []),
    )
    scored = json.loads(score_json.read_text())
    # Predictions of resized logits at the label's size: the same pixels as evaluation,
    # up to ties broken on other float paths.
    assert scored["pixel_accuracy"] == pytest.approx(eval_results["pixel_accuracy"], abs=1e-3)
    assert scored["mean_iou"] == pytest.approx(eval_results["mean_iou"], abs=1e-3)
    assert scored["labels"] == eval_results["labels"] == train_results["labels"]
    for key in ("mean_accuracy", "fw_iou"):
        assert scored[key] == pytest.approx(eval_results[key], abs=1e-3), key
    # Every labelled pixel once: the same number of ground-truth pixels per class.
    np.testing.assert_array_equal(
        np.sum(scored["confusion"], axis=1), np.sum(eval_results["confusion"], axis=1)
    )
    return eval_results, scored, pred_files


def test_evaluate_predict_and_score_agree(finished_run, run_module_ok, tmp_path):
    data, run = finished_run
    # An eval batch of 3 does not divide over the 4 devices: it is padded, not refused.
    _evaluate_predict_score(run_module_ok, data, run, tmp_path, "--set", "data.eval_batch_size=3")


def test_idd_level1_trains_evaluates_and_scores(synthetic_data, run_module_ok, tmp_path):
    data, run = _train(
        synthetic_data(8, 5, 2, 64, 96, 7), tmp_path / "run", "data.labels='idd_level1'"
    )
    eval_results, scored, pred_files = _evaluate_predict_score(run_module_ok, data, run, tmp_path)
    assert list(eval_results["iou"]) == list(IDD_LEVEL1.class_names)
    ids = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in pred_files]))
    assert set(ids.tolist()) <= set(range(IDD_LEVEL1.num_classes)) | {255}


def test_cityscapes_layout_trains_evaluates_and_scores(synthetic_data, run_module_ok, tmp_path):
    data = synthetic_data(8, 5, 2, 64, 96, 7, layout="cityscapes")
    data, run = _train(data, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["labels"] == "cityscapes"
    eval_results, scored, pred_files = _evaluate_predict_score(run_module_ok, data, run, tmp_path)
    assert list(eval_results["iou"]) == list(CITYSCAPES.class_names)
    # Predictions are written as Cityscapes labelIds, which cityscapesscripts reads.
    ids = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in pred_files]))
    assert set(ids.tolist()) <= set(CITYSCAPES.output_ids) | {0}


def test_evaluate_without_run_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxseg.evaluate", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a jaxseg run (no config.json)"
    ]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc tunable")
def test_reexec_with_huge_pages_restarts_once_and_respects_a_set_tunable(tmp_path):
    (tmp_path / "show_tunables.py").write_text(
        "import os, sys\nprint(os.environ['GLIBC_TUNABLES'], sys.argv[1:])\n"
    )
    code = "from jaxseg import cli; cli.reexec_with_huge_pages('show_tunables'); print('kept')"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])

    def run(extra_env):
        command = [sys.executable, "-c", code, "--flag"]
        result = subprocess.run(command, env={**env, **extra_env}, capture_output=True, text=True)
        return result.stdout.strip()

    assert run({}) == "glibc.malloc.hugetlb=1 ['--flag']"
    assert run({"GLIBC_TUNABLES": ""}) == "kept"
