"""The command-line tools on one finished tiny run: evaluate, predict and score agree."""

import json
import os
import platform
import subprocess
import sys

import pytest
from PIL import Image

from jaxseg import train
from jaxseg.config import load_config
from jaxseg.data import synthetic


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    synthetic.generate(data, train=8, val=5, test=2, height=64, width=96, seed=7)
    config = load_config(
        "baseline",
        data=str(data),
        overrides=[
            "data.height=64",
            "data.width=96",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.workers=0",
            "model.options={'widths': (8, 8, 8, 8, 8)}",
            "train.epochs=2",
            "optimizer.learning_rate=0.01",
        ],
    )
    train.train_and_evaluate(config, root / "run")
    return data, root / "run"


def _run(module, *args):
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_run_writes_report(finished_run):
    _, run = finished_run
    report_dir = run / "report"
    for name in ("loss.png", "accuracy.png", "class_iou.png", "report.md"):
        assert (report_dir / name).is_file(), name
    overlays = list(report_dir.glob("overlay_*.png"))
    assert len(overlays) == 1
    assert Image.open(overlays[0]).size[0] > 96


def test_evaluate_predict_and_score_agree(finished_run, tmp_path):
    data, run = finished_run
    evaluated = _run("jaxseg.evaluate", "--workdir", run, "--split", "val")
    assert "mIoU" in evaluated.stdout
    eval_results = json.loads((run / "eval_val.json").read_text())
    # The final val pass of training scored the same checkpoint on the same split.
    train_results = json.loads((run / "results.json").read_text())
    assert eval_results["mean_iou"] == pytest.approx(train_results["mean_iou"], rel=1e-9)

    predictions = tmp_path / "pred"
    _run(
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
    _run(
        "jaxseg.score", "--pred", predictions, "--gt", data / "gtFine" / "val", "--json", score_json
    )
    scored = json.loads(score_json.read_text())
    assert scored["pixel_accuracy"] == pytest.approx(eval_results["pixel_accuracy"], abs=1e-3)
    assert scored["mean_iou"] == pytest.approx(eval_results["mean_iou"], abs=1e-3)


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
