"""TensorBoard events next to metrics.jsonl, read back with tensorboard's own reader."""

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxseg.config import load_config
from jaxseg.trainer import train_and_evaluate

pytestmark = pytest.mark.slow


def test_events_hold_the_records_and_an_overlay_per_evaluation(synthetic_data, tmp_path):
    data = synthetic_data(16, 4, 1, 32, 64, 3)
    overrides = [
        "data.height=32",
        "data.width=64",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.workers=0",
        "model.options={'widths': (4, 4)}",
        "train.epochs=2",
        "train.log_every_steps=2",
        "train.tensorboard_images=2",
    ]
    train_and_evaluate(load_config("baseline", data=str(data), overrides=overrides), tmp_path)
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "learning_rate", "train_grad_norm", "images_per_sec"):
        logged = [(r["step"], r[key]) for r in records if key in r]
        read = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in read] == [2, 4, 6, 8] == [s for s, _ in logged]
        np.testing.assert_allclose([v for _, v in read], [v for _, v in logged], rtol=1e-6)
    for key in ("val_loss", "val_pixel_accuracy", "val_mean_iou", "val_iou/traffic_sign"):
        assert [e.step for e in events.Scalars(key)] == [4, 8], key
    val = [r for r in records if "val_mean_iou" in r]
    assert events.Scalars("val_mean_iou")[-1].value == pytest.approx(val[-1]["val_mean_iou"])
    # Classes absent from the split have no IoU (null in metrics.jsonl, no event).
    present = {
        "val_iou/" + c.replace(" ", "_")
        for r in val
        for c, iou in r["val_iou"].items()
        if iou is not None
    }
    assert {t for t in tags["scalars"] if t.startswith("val_iou/")} == present
    overlays = events.Images("val_overlay")
    assert [e.step for e in overlays] == [4, 8]
    assert (overlays[0].height, overlays[0].width) == (2 * 32, 3 * 64)
