"""Bad files met in training or evaluation (truncated JPEG, wrong-size label, unknown label
id) follow `data.on_error`: "raise" names the file, "skip" leaves the example out, logs
it and lists it in results.json."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxseg.config import load_config
from jaxseg.data import formats, pipeline
from jaxseg.errors import DataError
from jaxseg.trainer import train_and_evaluate


@pytest.fixture
def bad_data(synthetic_data, tmp_path):
    """A copy of a 16/4 synthetic dataset with three bad train files and one bad val file;
    returns (root, {split: [image paths of the bad examples]})."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_data(16, 4, 1, 32, 64, 3), root)
    images = {s: sorted((root / "leftImg8bit" / s).rglob("*.jpg")) for s in ("train", "val")}

    def label_of(image):
        relative = image.relative_to(root / "leftImg8bit")
        stem = image.name.replace("_leftImg8bit.jpg", "_gtFine_labellevel3Ids.png")
        return root / "gtFine" / relative.parent / stem

    truncated, wrong_size, unknown_id = images["train"][2], images["train"][5], images["train"][9]
    truncated.write_bytes(truncated.read_bytes()[:300])
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(label_of(wrong_size))
    Image.fromarray(np.full((32, 64), 200, np.uint8)).save(label_of(unknown_id))
    bad_val = images["val"][1]
    bad_val.write_bytes(bad_val.read_bytes()[:200])
    return root, {
        "train": sorted(map(str, (truncated, wrong_size, unknown_id))),
        "val": [str(bad_val)],
    }


def _split(root, split):
    config = load_config("baseline", data=str(root))
    return formats.config_dataset(config).split(split)


def test_raise_names_the_file(bad_data):
    root, bad = bad_data
    with pytest.raises(DataError, match=bad["val"][0]):
        list(pipeline.eval_batches(_split(root, "val"), height=32, width=64, batch_size=2))
    train = pipeline.train_dataset(_split(root, "train"), height=32, width=64, batch_size=4, seed=0)
    with pytest.raises(DataError, match="label|cannot decode"):
        for _, _ in zip(range(4), iter(train), strict=False):
            pass


def test_skip_leaves_out_exactly_the_bad_files(bad_data, caplog):
    root, bad = bad_data
    skipped = []
    batches = pipeline.eval_batches(
        _split(root, "val"), height=32, width=64, batch_size=2, on_error="skip", skipped=skipped
    )
    assert sum(int(b["mask"].sum()) for b in batches) == 3 and skipped == bad["val"]
    train = pipeline.train_dataset(
        _split(root, "train"),
        height=32,
        width=64,
        batch_size=4,
        seed=0,
        on_error="skip",
        skipped=skipped,
    )
    epoch = [batch for _, batch in zip(range(4), iter(train), strict=False)]
    assert all(b["image"].shape == (4, 32, 64, 3) for b in epoch)
    assert sorted(skipped[1:]) == bad["train"]
    for reason in ("cannot decode", "label size (16, 64) != image size", "label id 200"):
        assert reason in caplog.text


@pytest.mark.slow
def test_training_with_skip_lists_the_files_in_results(bad_data, tmp_path):
    root, bad = bad_data
    overrides = [
        "data.height=32",
        "data.width=64",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.workers=0",
        "model.options={'widths': (4, 4)}",
        "train.epochs=1",
        "data.on_error=skip",
    ]
    config = load_config("baseline", data=str(root), overrides=overrides)
    train_and_evaluate(config, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["skipped_files"] == sorted(bad["train"] + bad["val"])
