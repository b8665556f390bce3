"""Figures, overlays, report.md and the results table of finished runs."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxseg import report
from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL3
from jaxseg.errors import DataError

CLASS_NAMES = IDD_LEVEL3.class_names
SEED_CLASSES = IDD_LEVEL3.headline

STEPS_PER_EPOCH = 4


def make_records(epochs: int = 3) -> list[dict]:
    """metrics.jsonl of a run logging every 2 steps; sidewalk has no IoU in epoch 2."""
    records = []
    for step in range(2, epochs * STEPS_PER_EPOCH + 1, 2):
        records.append(
            {"step": step, "epoch": step / STEPS_PER_EPOCH, "train_loss": 3.0 - step / 10}
        )
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            iou = {name: 0.01 * i + 0.1 * epoch for i, name in enumerate(CLASS_NAMES)}
            if epoch == 2:
                iou["sidewalk"] = None  # NaN is stored as null.
            records.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "val_loss": 2.0 / epoch,
                    "val_pixel_accuracy": 0.5 + 0.1 * epoch,
                    "val_mean_iou": 0.2 + 0.1 * epoch,
                    "val_iou": iou,
                }
            )
    return records


def write_run(directory, experiment: str, pixel_accuracy: float, mean_iou: float, seed: int):
    rng = np.random.default_rng(seed)
    iou = {name: float(rng.uniform()) for name in CLASS_NAMES}
    iou["bicycle"] = None
    directory.mkdir(parents=True, exist_ok=True)
    results = {
        "experiment": experiment,
        "split": "val",
        "pixel_accuracy": pixel_accuracy,
        "mean_iou": mean_iou,
        "iou": iou,
        "steps": 12,
        "epochs": 3.0,
        "train_images_per_sec": 10.5,
    }
    (directory / "results.json").write_text(json.dumps(results))
    return results


def assert_png(path, min_size: int = 200, max_size: int = 4000) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        width, height = image.size
    assert min_size <= width <= max_size and min_size // 2 <= height <= max_size
    return width, height


def test_curves_average_train_records_per_epoch():
    curves = report.curves_from_records(make_records())
    np.testing.assert_array_equal(curves.train_epochs, [1, 2, 3])
    # Epoch 1 has the records of steps 2 and 4 (epochs 0.5 and 1.0).
    np.testing.assert_allclose(curves.train_loss, [(2.8 + 2.6) / 2, (2.4 + 2.2) / 2, 1.9])
    np.testing.assert_array_equal(curves.val_epochs, [1, 2, 3])
    np.testing.assert_allclose(curves.val_loss, [2.0, 1.0, 2.0 / 3])
    assert math.isnan(curves.val_iou["sidewalk"][1])
    assert set(curves.val_iou) == set(CLASS_NAMES)


def test_figures_draw_one_line_per_curve_and_skip_nan_points():
    curves = report.curves_from_records(make_records())
    assert len(report.loss_figure(curves, IDD_LEVEL3).axes[0].get_lines()) == 2
    assert len(report.accuracy_figure(curves, IDD_LEVEL3).axes[0].get_lines()) == 2
    axes = report.class_iou_figure(curves, IDD_LEVEL3).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines) == list(CLASS_NAMES)
    np.testing.assert_array_equal(lines["sidewalk"].get_xdata(), [1, 3])
    np.testing.assert_array_equal(lines["road"].get_xdata(), [1, 2, 3])
    legend = axes.get_legend()
    assert len(legend.get_texts()) == 26
    assert legend.get_bbox_to_anchor().x0 > axes.get_window_extent().x1  # Outside the axes.


def test_plot_curves_writes_valid_pngs(tmp_path):
    paths = report.plot_curves(make_records(), tmp_path / "report", IDD_LEVEL3)
    assert [p.name for p in paths] == ["loss.png", "accuracy.png", "class_iou.png"]
    for path in paths:
        assert_png(path)
    with pytest.raises(DataError, match="no train or evaluation records"):
        report.plot_curves([{"step": 1}], tmp_path, IDD_LEVEL3)


def test_blend_and_overlay(tmp_path):
    image = np.full((60, 100, 3), 200, np.uint8)
    prediction = np.zeros((60, 100), np.int64)
    prediction[:, 50:] = 255
    blended = report.blend(image, prediction, IDD_LEVEL3, alpha=0.5)
    np.testing.assert_array_equal(blended[:, 50:], image[:, 50:])  # Void: image unchanged.
    expected = np.round((200 + IDD_LEVEL3.colorize(prediction[:1, :1]).astype(float)) / 2)
    np.testing.assert_array_equal(blended[0, 0], expected[0, 0])

    label = np.full((60, 100), 9, np.uint8)  # car
    label[:10] = 255
    with_label = assert_png(
        report.save_overlay(image, prediction, label, IDD_LEVEL3, tmp_path / "a.png")
    )
    without = assert_png(
        report.save_overlay(image, prediction, None, IDD_LEVEL3, tmp_path / "b.png")
    )
    assert with_label[0] > without[0] > without[1]  # Panels side by side.
    legend = report.overlay_figure(image, prediction, label, IDD_LEVEL3).legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["road", "car"]
    with pytest.raises(ValueError, match="prediction shape"):
        report.overlay_figure(image, prediction[:10], label, IDD_LEVEL3)


def test_write_report_md(tmp_path):
    results = write_run(tmp_path, "rotation", 0.81234, 0.35, seed=0)
    report.plot_curves(make_records(), tmp_path / "report", IDD_LEVEL3)
    (tmp_path / "report" / "overlay_test_0.png").write_bytes(
        (tmp_path / "report" / "loss.png").read_bytes()
    )
    text = report.write_report_md(tmp_path).read_text()
    assert "| PA | 0.8123 | 0.8041 |" in text  # This run beside the study's rotation row.
    assert f"| road | {results['iou']['road']:.4f} | 0.8730 |" in text
    assert "| bicycle | n/a |" in text
    for name in ("loss.png", "accuracy.png", "class_iou.png", "overlay_test_0.png"):
        assert f"({name})" in text
    assert text.index("loss.png") < text.index("overlay_test_0.png")


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]


def test_table_command_reports_the_files_numbers(tmp_path, capsys):
    first = write_run(tmp_path / "a", "baseline", 0.79441234, 0.33715, seed=1)
    second = write_run(tmp_path / "b", "my_variant", 0.5, 0.25, seed=2)
    out = tmp_path / "table.md"
    report.main(["table", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    header, _, *rows = table_rows(printed)
    assert header == ["experiment", "source", "PA", "mIoU", *SEED_CLASSES]
    assert len(rows) == 3  # baseline, the study's baseline, my_variant (not in the study).
    for row, results in ((rows[0], first), (rows[2], second)):
        expected = [f"{results['pixel_accuracy']:.4f}", f"{results['mean_iou']:.4f}"]
        expected += [f"{results['iou'][c]:.4f}" for c in SEED_CLASSES]
        assert row[0] == results["experiment"] and row[2:] == expected
    assert rows[0][1] == str(tmp_path / "a")  # Results without their data: the folder.
    assert rows[1] == ["baseline", "study (Table 1)", "0.7944", "0.3371"] + [
        "0.8632",
        "0.2323",
        "0.5084",
        "0.2419",
        "0.9403",
    ]

    report.main(["table", "--runs", str(tmp_path / "a"), "--all-classes"])
    header, _, run_row, seed_row = table_rows(capsys.readouterr().out)
    assert len(header) == 4 + 26 and set(header[4:]) == set(CLASS_NAMES)
    assert run_row[header.index("bicycle")] == "n/a"
    assert run_row[header.index("bus")] == f"{first['iou']['bus']:.4f}"
    assert seed_row[header.index("bus")] == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "results.json: no such file"),
        ("{not json", "results.json: not valid JSON"),
        ('{"experiment": "x", "pixel_accuracy": 0.5, "iou": {}}', "missing field 'mean_iou'"),
        (
            '{"experiment": "x", "pixel_accuracy": "high", "mean_iou": 0.1, "iou": {}}',
            "pixel_accuracy is 'high'",
        ),
    ],
)
def test_table_command_bad_results_exit_2(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        report.main(["table", "--runs", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert str(tmp_path / "results.json") in error and message in error


def test_plots_command_regenerates_the_report(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_records()))
    write_run(tmp_path, "unet", 0.7, 0.3, seed=3)
    report.main(["plots", "--workdir", str(tmp_path)])
    for name in ("loss.png", "accuracy.png", "class_iou.png"):
        assert_png(tmp_path / "report" / name)
    assert "(class_iou.png)" in (tmp_path / "report" / "report.md").read_text()


def test_module_entry_point_reports_a_missing_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxseg.report", "plots", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'metrics.jsonl'}: no such file\n"


def test_table_source_says_where_the_numbers_come_from(tmp_path, capsys):
    """The source column names the run's data; a Cityscapes run gets its own classes and
    no study row (the study was on IDD level 3)."""
    for name, data, labels in (
        ("baseline", "synthetic", "idd_level3"),
        ("cs", "/data/cityscapes", "cityscapes"),
    ):
        run = tmp_path / name
        results = write_run(run, name, 0.5, 0.25, seed=4)
        results.update(data=data, labels=labels)
        if labels == "cityscapes":
            results["iou"] = {c: 0.5 for c in CITYSCAPES.class_names}
        (run / "results.json").write_text(json.dumps(results))
    report.main(["table", "--runs", str(tmp_path / "baseline")])
    header, _, run_row, study_row = table_rows(capsys.readouterr().out)
    assert run_row[:2] == ["baseline", "synthetic"] and study_row[1] == "study (Table 1)"
    report.main(["table", "--runs", str(tmp_path / "cs")])
    header, _, *rows = table_rows(capsys.readouterr().out)
    assert header[4:] == list(CITYSCAPES.headline)
    assert len(rows) == 1 and rows[0][:2] == ["cs", "cityscapes"]


def test_confusion_figure_is_row_normalised_with_class_names():
    from jaxseg.data.labels import IDD_LEVEL1

    k = IDD_LEVEL1.num_classes
    confusion = np.zeros((k, k + 1), np.int64)
    confusion[0, :3] = (6, 2, 0)
    confusion[0, k] = 2  # Void predictions: the last column.
    confusion[1, 1] = 5
    axes = report.confusion_figure(confusion, IDD_LEVEL1).axes[0]
    shown = axes.images[0].get_array()
    np.testing.assert_allclose(shown[0].filled(np.nan)[[0, 1, 2, k]], [0.6, 0.2, 0.0, 0.2])
    assert shown[1, 1] == 1.0
    assert shown.mask[2:].all()  # Classes absent from the ground truth: no colour.
    assert [t.get_text() for t in axes.get_xticklabels()] == [*IDD_LEVEL1.class_names, "void"]
    assert [t.get_text() for t in axes.get_yticklabels()] == list(IDD_LEVEL1.class_names)
    assert sorted(t.get_text() for t in axes.texts) == ["100", "20", "20", "60"]
    with pytest.raises(DataError, match=r"confusion matrix of shape \(7, 7\)"):
        report.confusion_figure(confusion[:, :k], IDD_LEVEL1)


def test_confusion_command_draws_the_runs_matrix(tmp_path, capsys):
    results = write_run(tmp_path, "unet", 0.7, 0.3, seed=5)
    with pytest.raises(SystemExit) as exit_info:
        report.main(["confusion", "--workdir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "results.json: no confusion matrix" in capsys.readouterr().err
    confusion = np.arange(26 * 27).reshape(26, 27).tolist()
    (tmp_path / "results.json").write_text(json.dumps({**results, "confusion": confusion}))
    report.main(["confusion", "--workdir", str(tmp_path)])
    width, height = assert_png(tmp_path / "report" / "confusion.png", min_size=600)
    assert width > height  # The void column and the colour bar beside the square matrix.
