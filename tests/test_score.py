"""`jaxseg.score`: IDD's metrics on folders of label PNGs, on hand-computed cases, and
Cityscapes' against cityscapesscripts' own evaluator."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxseg import score
from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL3
from jaxseg.errors import DataError

CLASS_NAMES = IDD_LEVEL3.class_names
REPO = Path(__file__).resolve().parents[1]

# Image 1: ground truth with void as 255 and as 26 (IDD's evaluation files).
GT1 = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 255, 255],
        [2, 2, 26, 26],
    ],
    np.uint8,
)
PRED1 = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 255],  # A void prediction on class 1: a miss.
        [2, 0, 5, 9],  # 5 and 9 only on void ground truth: not counted at all.
        [2, 2, 2, 2],
    ],
    np.uint8,
)
# Image 2: class 3 only, mostly predicted as 4 (present in no ground truth: IoU 0, counted).
GT2 = np.full((2, 2), 3, np.uint8)
PRED2 = np.array([[3, 4], [4, 4]], np.uint8)

# By hand over both images (one matrix, not a mean of per-image scores):
#   class 0: TP 3, FN 1, FP 1 (gt 2 at [2,1]) -> 3/5
#   class 1: TP 3, FN 1 (void prediction), FP 1 (gt 0 at [0,1]) -> 3/5
#   class 2: TP 3, FN 1 -> 3/4;  class 3: TP 1, FN 3 -> 1/4;  class 4: FP 3 -> 0
#   all others (5 and 9 included): NaN, left out of the mean.
EXPECTED_IOU = {"road": 0.6, "drivable fallback": 0.6, "sidewalk": 0.75,
                "non-drivable fallback": 0.25, "person": 0.0}  # fmt: skip
EXPECTED_PA = (3 + 3 + 3 + 1) / (12 + 4)
EXPECTED_MIOU = (0.6 + 0.6 + 0.75 + 0.25 + 0.0) / 5
# Accuracy TP / ground-truth pixels: 3/4, 3/4, 3/4, 1/4 (class 4 has none: NaN, left out).
EXPECTED_MEAN_ACCURACY = (0.75 * 3 + 0.25) / 4
# Four ground-truth pixels per class: the mean of the four IoUs.
EXPECTED_FW_IOU = (0.6 + 0.6 + 0.75 + 0.25) / 4
# Dice 2 TP / (ground truth + predictions): class 2 is predicted 3 times, class 4 3 times.
EXPECTED_DICE = {"road": 6 / 8, "drivable fallback": 6 / 8, "sidewalk": 6 / 7,
                 "non-drivable fallback": 2 / 5, "person": 0.0}  # fmt: skip


def save(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(path)


def upsample(label: np.ndarray, factor: int) -> np.ndarray:
    return label.repeat(factor, axis=0).repeat(factor, axis=1)


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt" / "val", tmp_path / "pred"
    save(gt / "201" / "frame0001_gtFine_labellevel3Ids.png", GT1)
    save(gt / "0" / "000002_gtFine_labellevel3Ids.png", GT2)
    save(gt / "0" / "000002_gtFine_color.png", np.zeros((2, 2), np.uint8))  # Not a label.
    # Suffixes stripped; a prediction at twice the label's size is resized to it.
    save(pred / "frame0001_leftImg8bit_pred.png", upsample(PRED1, 2))
    save(pred / "sub" / "000002_prediction.png", PRED2)
    return gt, pred


def check_scores(scores: dict) -> None:
    assert scores["pixel_accuracy"] == pytest.approx(EXPECTED_PA)
    assert scores["mean_iou"] == pytest.approx(EXPECTED_MIOU)
    assert scores["mean_accuracy"] == pytest.approx(EXPECTED_MEAN_ACCURACY)
    assert scores["fw_iou"] == pytest.approx(EXPECTED_FW_IOU)
    for name in CLASS_NAMES:
        if name in EXPECTED_IOU:
            assert scores["iou"][name] == pytest.approx(EXPECTED_IOU[name]), name
            assert scores["dice"][name] == pytest.approx(EXPECTED_DICE[name]), name
        else:
            assert math.isnan(scores["iou"][name]), name
            assert math.isnan(scores["dice"][name]), name


def test_hand_computed_metrics(folders):
    gt, pred = folders
    scores = score.score_folders(pred, gt)
    assert scores["images"] == 2
    check_scores(scores)


def test_match_key_strips_stacked_suffixes():
    assert score.match_key(Path("a/frame0029_leftImg8bit_pred.png")) == "frame0029"
    assert score.match_key(Path("frame0029_gtFine_labellevel3Ids.png")) == "frame0029"
    assert score.match_key(Path("000123_labelIds.png")) == "000123"
    assert score.match_key(Path("000123.png")) == "000123"


def test_prediction_smaller_than_label_is_upsampled_nearest(tmp_path):
    save(tmp_path / "gt" / "x_gtFine_labellevel3Ids.png", upsample(np.array([[1, 2]], np.uint8), 3))
    save(tmp_path / "pred" / "x_pred.png", np.array([[1, 2]], np.uint8))
    scores = score.score_folders(tmp_path / "pred", tmp_path / "gt")
    assert scores["pixel_accuracy"] == 1.0
    assert scores["iou"]["drivable fallback"] == scores["iou"]["sidewalk"] == 1.0


def test_repeated_ids_pair_by_sequence_folder(tmp_path):
    # IDD Part II: frame0001 in two sequences; predictions keep the sequence folders.
    for seq, value in (("201", 0), ("202", 2)):
        save(
            tmp_path / "gt" / seq / "frame0001_gtFine_labellevel3Ids.png",
            np.full((2, 2), value, np.uint8),
        )
        save(tmp_path / "pred" / seq / "frame0001_pred.png", np.full((2, 2), value, np.uint8))
    assert score.score_folders(tmp_path / "pred", tmp_path / "gt")["pixel_accuracy"] == 1.0
    # Flat predictions cannot tell the two apart: an error, not a silent mix-up.
    for path in (tmp_path / "pred").rglob("*.png"):
        path.unlink()
    save(tmp_path / "pred" / "frame0001_pred.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="frame0001"):
        score.score_folders(tmp_path / "pred", tmp_path / "gt")


def run_score(*args):
    return subprocess.run(
        [sys.executable, "-m", "jaxseg.score", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_prints_metrics_and_writes_results_json(folders, tmp_path):
    gt, pred = folders
    out = tmp_path / "results" / "score.json"
    result = run_score("--pred", pred, "--gt", gt, "--json", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["pixel", "accuracy", f"{EXPECTED_PA:.4f}"]
    assert lines[2].split() == ["mean", "IoU", f"{EXPECTED_MIOU:.4f}"]
    assert lines[3].split() == ["mean", "accuracy", f"{EXPECTED_MEAN_ACCURACY:.4f}"]
    assert lines[4].split() == ["frequency-weighted", "IoU", f"{EXPECTED_FW_IOU:.4f}"]
    assert [line.split()[0] for line in lines[5:10]] == [
        "road",
        "sidewalk",
        "car",
        "billboard",
        "sky",
    ]
    assert len(lines) == 11 + len(CLASS_NAMES)
    record = json.loads(out.read_text())
    assert set(record) == {"experiment", "split", "data", "labels", "pixel_accuracy", "mean_iou",
                           "iou", "mean_accuracy", "fw_iou", "accuracy", "dice", "confusion",
                           "steps", "epochs", "train_images_per_sec", "images"}  # fmt: skip
    # Rows: ground truth; columns: predictions, then void predictions (class 1's miss).
    assert record["confusion"][0][:3] == [3, 1, 0] and record["confusion"][1][-1] == 1
    assert sum(map(sum, record["confusion"])) == 16
    assert record["labels"] == "idd_level3" and record["images"] == 2
    assert record["experiment"] == "score" and record["split"] == "val"
    assert (record["steps"], record["epochs"], record["train_images_per_sec"]) == (0, 0.0, 0.0)
    assert record["iou"]["car"] is None  # Absent class: NaN, written as null.
    nan_for_null = {
        key: {k: math.nan if v is None else v for k, v in record[key].items()}
        for key in ("iou", "dice")
    }
    check_scores({**record, **nan_for_null})


def test_cli_ground_truth_without_prediction_is_an_error(folders):
    gt, pred = folders
    (pred / "sub" / "000002_prediction.png").unlink()
    result = run_score("--pred", pred, "--gt", gt)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "000002_gtFine_labellevel3Ids.png" in lines[0] and "no prediction" in lines[0]


def test_cli_bad_prediction_png_is_an_error(folders):
    gt, pred = folders
    Image.new("RGB", (4, 4)).save(pred / "sub" / "000002_prediction.png")  # Colours, not ids.
    result = run_score("--pred", pred, "--gt", gt)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {pred / 'sub' / '000002_prediction.png'}: label PNG has mode RGB, expected L (ids)"
    ]


def test_cityscapes_scores_equal_cityscapesscripts(tmp_path, monkeypatch):
    """Cityscapes ground truth (labelIds) is recognised, and predictions as labelIds score
    as cityscapesscripts' evaluator scores them: ignored ground truth skipped, a predicted
    ignored id a miss."""
    evaluator = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # Removed in NumPy 2.
    rng = np.random.default_rng(0)
    ids = [0, 4, 7, 8, 11, 21, 23, 24, 26, 33]  # Evaluated, ignored (0, 4) and void ids.
    gts, preds = [], []
    for i in range(3):
        stem = f"city_{i:06d}_000019"
        gt = tmp_path / "gt" / "city" / f"{stem}_gtFine_labelIds.png"
        pred = tmp_path / "pred" / f"{stem}_pred.png"
        save(gt, rng.choice(ids, (12, 16)).astype(np.uint8))
        save(pred, rng.choice(ids, (12, 16)).astype(np.uint8))
        gts.append(str(gt))
        preds.append(str(pred))
    scores = score.score_folders(tmp_path / "pred", tmp_path / "gt")
    assert scores["labels"] == "cityscapes" and scores["images"] == 3

    args = evaluator.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "JSONOutput", False)
    official = evaluator.evaluateImgLists(preds, gts, args)
    assert scores["mean_iou"] == pytest.approx(official["averageScoreClasses"], rel=1e-12)
    for name in CITYSCAPES.class_names:
        expected = official["classScores"][name]
        if math.isnan(expected):
            assert math.isnan(scores["iou"][name]), name
        else:
            assert scores["iou"][name] == pytest.approx(expected, rel=1e-12), name
