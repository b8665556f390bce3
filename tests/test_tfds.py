"""The TFDS array_record dataset: built from an IDD tree, read back without TensorFlow."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import idd_fixture
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from jaxseg.data import formats, pipeline, sources, stats, tfds_idd  # noqa: E402
from jaxseg.data.labels import IDD_LEVEL3  # noqa: E402
from jaxseg.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(IDD root, TFDS data dir) of the fixture tree, built once for the module."""
    tmp = tmp_path_factory.mktemp("tfds")
    root = tmp / "idd"
    idd_fixture.make_labelled_root(root)
    tfds_idd.build(root, tmp / "data", progress=False)
    return root, tmp / "data"


def test_tensorflow_is_not_needed(built):
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_round_trip_equals_folder_source(built, split):
    root, data_dir = built
    labelled = split != "test"
    from_tfds = formats.open_split(data_dir, split, require_labels=labelled)
    from_folder = formats.open_split(root, split, require_labels=labelled)
    assert isinstance(from_tfds, tfds_idd.TfdsSource)
    assert len(from_tfds) == len(from_folder)
    for index in range(len(from_folder)):
        a = sources.load_example(from_tfds[index], IDD_LEVEL3)
        b = sources.load_example(from_folder[index], IDD_LEVEL3)
        assert a["name"] == b["name"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_training_and_eval_batches_are_the_same(built):
    root, data_dir = built
    batches = []
    for data in (root, data_dir):
        source = formats.open_split(data, "train")
        dataset = pipeline.train_dataset(source, height=8, width=12, batch_size=2, seed=5)
        iterator = iter(dataset)
        batches.append([next(iterator) for _ in range(4)])
    for a, b in zip(*batches, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    evals = [
        list(pipeline.eval_batches(formats.open_split(d, "val"), height=8, width=12, batch_size=2))
        for d in (root, data_dir)
    ]
    for a, b in zip(*evals, strict=True):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(a[key], b[key])


def test_source_pickles_for_grain_workers(built):
    _, data_dir = built
    source = formats.open_split(data_dir, "train")
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == len(source) and copy[3] == source[3]


def test_pixel_counts_same_as_folder(built):
    root, data_dir = built
    np.testing.assert_array_equal(
        stats.pixel_counts(formats.open_split(data_dir, "train")),
        stats.pixel_counts(formats.open_split(root, "train")),
    )


def test_open_split_errors_and_version_dir(built, tmp_path):
    root, data_dir = built
    with pytest.raises(DataError, match="test: the split has no labels"):
        formats.open_split(data_dir, "test")
    version_dir = data_dir / "idd" / "full" / "1.0.0"
    assert len(formats.open_split(version_dir, "val")) == 2
    # A second config beside the first: the caller must say which.
    both = tmp_path / "both"
    for config in ("full", "synthetic"):
        tfds_idd.build(root, both, config=config, progress=False)
    with pytest.raises(DataError, match="several TFDS datasets"):
        formats.open_split(both, "train")
    assert len(formats.open_split(both / "idd" / "synthetic", "train")) == 5


def test_partly_labelled_split_is_an_error(tmp_path):
    root = tmp_path / "idd"
    idd_fixture.make_labelled_root(root)
    idd_fixture.label_path(root, "val", "1", "000003").unlink()
    with pytest.raises(DataError, match="000003_leftImg8bit.png: no level-3 label"):
        tfds_idd.build(root, tmp_path / "data", progress=False)


def truncate_jpeg(root):
    path = idd_fixture.image_path(root, "train", "201", "frame0001", "jpg")
    path.write_bytes(path.read_bytes()[:-200])
    return path


def truncate_png(root):
    path = idd_fixture.image_path(root, "val", "1", "000003", "png")
    path.write_bytes(path.read_bytes()[:100])
    return path


def label_wrong_mode(root):
    path = idd_fixture.label_path(root, "train", "0", "000002")
    Image.new("RGB", (24, 16)).save(path)
    return path


def label_wrong_size(root):
    path = idd_fixture.label_path(root, "val", "203", "frame0005")
    Image.fromarray(np.zeros((16, 23), np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "breaker", [truncate_jpeg, truncate_png, label_wrong_mode, label_wrong_size]
)
def test_cli_hostile_input_fails_the_build_cleanly(tmp_path, breaker):
    root = tmp_path / "idd"
    idd_fixture.make_labelled_root(root)
    bad = breaker(root)
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "jaxseg.data.prepare", "--idd-root", root, "--tfds", out,
         "--workers", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), result.stderr
    # Nothing half-written: no dataset, no incomplete folder.
    assert not list(out.rglob("dataset_info.json"))
    assert not list(out.rglob("*.array_record*"))
    assert not [p for p in out.rglob("*") if "incomplete" in p.name]
