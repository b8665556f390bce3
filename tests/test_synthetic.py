"""The built-in synthetic dataset: IDD and Cityscapes layouts, determinism, alignment, defaults,
CLI."""

import hashlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxseg.data import synthetic
from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL3, VOID, label_counts
from jaxseg.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TINY = {"train": 6, "val": 3, "test": 2, "height": 64, "width": 128, "seed": 1}
SKY, ROAD = 25, 0
NUM_CLASSES = IDD_LEVEL3.num_classes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", **TINY)


def _labels(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "gtFine").rglob("*_gtFine_labellevel3Ids.png"))
    }


# Per layout: the suffixes of image and label file names.
SUFFIXES = {
    "idd": ("_leftImg8bit.jpg", "_gtFine_labellevel3Ids.png"),
    "cityscapes": ("_leftImg8bit.png", "_gtFine_labelIds.png"),
}


def _pairs(root: Path, split: str, layout: str = "idd") -> list[tuple[Path, Path]]:
    image_suffix, label_suffix = SUFFIXES[layout]
    images = sorted((root / "leftImg8bit" / split).rglob(f"*{image_suffix}"))
    pairs = []
    for image in images:
        stem = image.name.removesuffix(image_suffix)
        folder = image.parent.name
        pairs.append((image, root / "gtFine" / split / folder / f"{stem}{label_suffix}"))
    return pairs


def test_files_follow_the_idd_layout(dataset):
    names = set()
    for split in synthetic.SPLITS:
        pairs = _pairs(dataset, split)
        assert len(pairs) == TINY[split]
        for image_path, label_path in pairs:
            assert label_path.is_file(), label_path
            assert image_path.parent.name.startswith("s")
            with Image.open(image_path) as image, Image.open(label_path) as label:
                assert image.format == "JPEG" and image.mode == "RGB"
                assert image.size == label.size == (TINY["width"], TINY["height"])
            names.add(image_path.name)
    assert len(names) == TINY["train"] + TINY["val"] + TINY["test"]  # Unique across splits.
    # Nothing but the pairs and the manifest.
    files = {p for p in dataset.rglob("*") if p.is_file()}
    assert len(files) == 2 * len(names) + 1
    manifest = json.loads((dataset / synthetic.MANIFEST).read_text())
    # The default class set; the default layout is left out, as before layouts existed.
    assert manifest["params"] == {**TINY, "classes": "common"}


def test_labels_are_level3_ids_with_void(dataset):
    present = np.zeros(256, bool)
    counts = {split: np.zeros(NUM_CLASSES + 1, np.int64) for split in synthetic.SPLITS}
    for split in synthetic.SPLITS:
        for _, label_path in _pairs(dataset, split):
            with Image.open(label_path) as label:
                assert label.mode == "L"
                ids = np.asarray(label)
            values = np.unique(ids)
            assert set(values.tolist()) <= set(range(NUM_CLASSES)) | {VOID}
            present[values] = True
            hist = np.bincount(ids.ravel(), minlength=256)
            counts[split] += np.append(hist[:NUM_CLASSES], hist[VOID])
    assert present[:NUM_CLASSES].sum() >= 10
    assert present[[ROAD, SKY, 22, 24, 20]].all()  # road, sky, building, vegetation, pole
    manifest = json.loads((dataset / synthetic.MANIFEST).read_text())
    assert {s: c.tolist() for s, c in counts.items()} == manifest["pixel_counts"]


def test_image_and_label_are_aligned(dataset):
    """Sky pixels are bluer and brighter than road pixels: the image matches its label."""
    sky, road = [], []
    for split in synthetic.SPLITS:
        for image_path, label_path in _pairs(dataset, split):
            image = np.asarray(Image.open(image_path), np.float64)
            label = np.asarray(Image.open(label_path))
            sky.append(image[label == SKY])
            road.append(image[label == ROAD])
    sky, road = np.concatenate(sky).mean(axis=0), np.concatenate(road).mean(axis=0)
    assert sky.mean() > road.mean() + 30
    assert sky[2] - sky[0] > road[2] - road[0] + 10  # Blue minus red.


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path):
    params = {**TINY, "train": 3, "val": 1, "test": 1}
    a = _labels(synthetic.generate(tmp_path / "a", **params))
    b = _labels(synthetic.generate(tmp_path / "b", **params))
    assert a == b
    other = synthetic.generate(tmp_path / "c", **{**params, "seed": 2})
    c = {k.replace("/2_", "/1_"): v for k, v in _labels(other).items()}
    assert c.keys() == a.keys()
    assert all(c[k] != a[k] for k in a)


def _example_digest(classes: str | None, count: int = 8) -> str:
    """A digest of `count` examples; None: `example`'s default class set."""
    digest = hashlib.sha256()
    for index in range(count):
        args = (0, "train", index, 64, 128) + ((classes,) if classes else ())
        image, label = synthetic.example(*args)
        digest.update(image.tobytes() + label.tobytes())
    return digest.hexdigest()


def test_class_sets_are_explicit():
    assert set(synthetic.CLASS_SETS) == {"all", "common"}
    assert synthetic.CLASS_SETS["all"] == tuple(range(NUM_CLASSES))
    common = set(synthetic.CLASS_SETS["common"])
    assert common < set(range(NUM_CLASSES)) and len(common) >= 12
    assert {ROAD, SKY, 22, 24, 9, 4} <= common  # road, sky, building, vegetation, car, person
    assert not common & {5, 6, 7, 19}  # rider, motorcycle, bicycle, traffic light


def test_common_draws_only_its_classes_and_differs_from_all():
    common = set(synthetic.CLASS_SETS["common"])
    present, present_all = set(), set()
    for index in range(12):
        image, label = synthetic.example(3, "val", index, 64, 128, "common")
        ids = set(np.unique(label).tolist())
        assert ids <= common | {VOID}, ids - common
        present |= ids
        other_image, other_label = synthetic.example(3, "val", index, 64, 128, "all")
        assert not np.array_equal(image, other_image)
        present_all |= set(np.unique(other_label).tolist())
    assert len(present & common) >= 10
    assert len(present_all - common - {VOID}) >= 3  # "all" still draws the rare classes.
    assert _example_digest("common") != _example_digest("all")
    # The default everywhere is "common".
    assert synthetic.DEFAULT_PARAMS["classes"] == "common"
    assert _example_digest("common") == _example_digest(None)


def test_defaults_have_one_source():
    assert dict(synthetic.DEFAULT_PARAMS) == {
        "train": 200, "val": 40, "test": 10, "height": 256, "width": 512, "seed": 0,
        "classes": "common", "layout": "idd",
    }  # fmt: skip
    with pytest.raises(TypeError):
        synthetic.DEFAULT_PARAMS["train"] = 1  # type: ignore[index]
    signature = inspect.signature(synthetic.generate).parameters
    assert {key: signature[key].default for key in synthetic.DEFAULT_PARAMS} == dict(
        synthetic.DEFAULT_PARAMS
    )
    assert signature["workers"].default == synthetic.DEFAULT_WORKERS
    for function in (synthetic.example, synthetic.render):
        assert inspect.signature(function).parameters["classes"].default == "common"
    assert synthetic.validate({}) == {
        key: value for key, value in synthetic.DEFAULT_PARAMS.items() if key != "layout"
    }


def test_generate_all_classes(tmp_path):
    params = {**TINY, "train": 3, "val": 1, "test": 0, "classes": "all"}
    root = synthetic.generate(tmp_path / "all", **params)
    assert synthetic.read_manifest(root)["params"] == params
    labels = _labels(root)
    assert labels == _labels(synthetic.generate(tmp_path / "all2", **params))
    common = _labels(synthetic.generate(tmp_path / "common", **{**params, "classes": "common"}))
    assert common.keys() == labels.keys() and common != labels


def test_workers_do_not_change_the_data(tmp_path, dataset):
    parallel = synthetic.generate(tmp_path / "parallel", **TINY, workers=2)
    assert _labels(parallel) == _labels(dataset)


def test_existing_dataset_is_reused_or_replaced(tmp_path):
    params = {**TINY, "train": 2, "val": 1, "test": 0}
    root = synthetic.generate(tmp_path / "d", **params)
    manifest = root / synthetic.MANIFEST
    before = manifest.stat().st_mtime_ns
    assert synthetic.generate(root, **params) == root
    assert manifest.stat().st_mtime_ns == before
    synthetic.generate(root, **{**params, "train": 1})
    assert len(_pairs(root, "train")) == 1
    assert not list(tmp_path.glob(".d.*"))  # No temporary folders left behind.


def test_refuses_foreign_folders_and_bad_parameters(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a jaxseg synthetic dataset"):
        synthetic.generate(foreign, **TINY)
    assert (foreign / "notes.txt").read_text() == "mine"
    for bad in ({"height": 0}, {"width": -5}, {"train": 0}, {"seed": -1}):
        with pytest.raises(ConfigError):
            synthetic.generate(tmp_path / "new", **{**TINY, **bad})
    with pytest.raises(ConfigError, match="unknown"):
        synthetic.ensure_synthetic({"hieght": 64})
    for bad in ("rare", "", 3, None):
        with pytest.raises(ConfigError, match="classes"):
            synthetic.generate(tmp_path / "new", **{**TINY, "classes": bad})
    with pytest.raises(ConfigError, match="valid: all, common"):
        synthetic.ensure_synthetic({"classes": "Common"})
    for bad in ("IDD", "", None):
        with pytest.raises(ConfigError, match="layout"):
            synthetic.generate(tmp_path / "new", **{**TINY, "layout": bad})
    assert not (tmp_path / "new").exists()


def test_ensure_synthetic_caches_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    assert synthetic.default_cache_dir() == tmp_path / "cache"
    params = {**TINY, "train": 2, "val": 1, "test": 0}
    root = synthetic.ensure_synthetic(params)
    assert root.parent == tmp_path / "cache" and root.name.startswith("synthetic-")
    assert synthetic.read_manifest(root)["params"] == {**params, "classes": "common"}
    # Leaving `classes` out means the default: the same dataset.
    assert synthetic.ensure_synthetic({**params, "classes": "common"}) == root
    before = (root / synthetic.MANIFEST).stat().st_mtime_ns
    assert synthetic.ensure_synthetic({**params, "workers": 2}) == root
    assert (root / synthetic.MANIFEST).stat().st_mtime_ns == before
    assert synthetic.cache_path({**params, "seed": 5}) != root
    assert synthetic.cache_path({**params, "classes": "all"}) != root
    # The default layout keeps the cache key it had before layouts existed; another changes it.
    assert synthetic.cache_path({**params, "layout": "idd"}) == root
    assert synthetic.cache_path({**params, "layout": "cityscapes"}) != root
    # The key of the default parameters, the same as before `layout` existed: existing caches
    # stay valid until GENERATOR_VERSION changes.
    assert synthetic.cache_path().name == "synthetic-290e774d91d4"


CITYSCAPES_NAME = re.compile(r"synthcity_(\d{6})_(\d{6})_leftImg8bit\.png")


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "cityscapes"
    return synthetic.generate(root, **TINY, layout="cityscapes")


def test_cityscapes_layout_file_names(cityscapes):
    names = set()
    for split in synthetic.SPLITS:
        pairs = _pairs(cityscapes, split, "cityscapes")
        assert len(pairs) == TINY[split]
        for image_path, label_path in pairs:
            assert image_path.parent.name == "synthcity"
            assert CITYSCAPES_NAME.fullmatch(image_path.name), image_path.name
            assert label_path.is_file(), label_path
            with Image.open(image_path) as image, Image.open(label_path) as label:
                assert image.format == label.format == "PNG"
                assert image.mode == "RGB" and label.mode == "L"
                assert image.size == label.size == (TINY["width"], TINY["height"])
            names.add(image_path.name)
    assert len(names) == TINY["train"] + TINY["val"] + TINY["test"]  # Unique across splits.
    files = {p for p in cityscapes.rglob("*") if p.is_file()}
    assert len(files) == 2 * len(names) + 1  # The pairs and the manifest.
    params = synthetic.read_manifest(cityscapes)["params"]
    assert params == {**TINY, "classes": "common", "layout": "cityscapes"}


def test_cityscapes_table_maps_every_drawn_id_to_a_label_id():
    table = synthetic.CITYSCAPES_LABEL_IDS
    assert set(table) == set(range(NUM_CLASSES)) | {VOID}
    assert set(table.values()) <= set(range(34))  # Cityscapes' labelIds.
    assert table[VOID] == 0 and table[ROAD] == 7 and table[SKY] == 23
    assert table[13] == table[2] == 8  # Curbs are sidewalk in Cityscapes.


def test_cityscapes_labels_are_the_mapped_idd_labels(cityscapes, dataset):
    """The same scenes as the IDD layout's: its labels mapped, its images before JPEG."""
    lut = np.zeros(256, np.uint8)
    lut[list(synthetic.CITYSCAPES_LABEL_IDS)] = list(synthetic.CITYSCAPES_LABEL_IDS.values())
    counts = {}
    for split in synthetic.SPLITS:
        counts[split] = np.zeros(CITYSCAPES.num_classes + 1, np.int64)
        pairs = zip(_pairs(cityscapes, split, "cityscapes"), _pairs(dataset, split), strict=True)
        for index, ((image_path, label_path), (_, idd_label_path)) in enumerate(pairs):
            label = np.asarray(Image.open(label_path))
            assert set(np.unique(label).tolist()) <= set(synthetic.CITYSCAPES_LABEL_IDS.values())
            train_ids = CITYSCAPES.train_ids(label, str(label_path))  # Only valid labelIds.
            np.testing.assert_array_equal(label, lut[np.asarray(Image.open(idd_label_path))])
            image, _ = synthetic.example(TINY["seed"], split, index, TINY["height"], TINY["width"])
            np.testing.assert_array_equal(np.asarray(Image.open(image_path)), image)
            counts[split] += label_counts(train_ids, CITYSCAPES.num_classes)
    # The manifest counts Cityscapes' evaluated classes, then void.
    manifest = synthetic.read_manifest(cityscapes)
    assert manifest["pixel_counts"] == {split: c.tolist() for split, c in counts.items()}


def test_default_cache_dir_without_env(monkeypatch):
    monkeypatch.delenv("JAXSEG_CACHE", raising=False)
    assert synthetic.default_cache_dir() == Path.home() / ".cache" / "jaxseg"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jaxseg.data.synthetic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = _cli(
        "--out", str(out), "--train", "2", "--val", "1", "--test", "1",
        "--height", "32", "--width", "64", "--seed", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    assert "2 train" in result.stdout
    assert synthetic.read_manifest(out)["params"]["seed"] == 4
    assert len(_pairs(out, "train")) == 2 and len(_pairs(out, "test")) == 1


@pytest.mark.parametrize(
    "args",
    [("--height", "0"), ("--train", "-3"), ("--width", "-1"), ("--workers", "0")],
)
def test_cli_rejects_bad_arguments(tmp_path, args):
    result = _cli("--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "x").exists()


def test_cli_classes(tmp_path):
    out = tmp_path / "cli"
    args = ("--train", "1", "--val", "0", "--test", "0", "--height", "32", "--width", "64")
    result = _cli("--out", str(out), *args, "--classes", "all")
    assert result.returncode == 0, result.stderr
    assert synthetic.read_manifest(out)["params"]["classes"] == "all"
    result = _cli("--out", str(tmp_path / "bad"), *args, "--classes", "rare")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "all" in lines[0] and "common" in lines[0]
    assert not (tmp_path / "bad").exists()


def test_cli_layout(tmp_path):
    out = tmp_path / "cli"
    args = ("--train", "1", "--val", "0", "--test", "0", "--height", "32", "--width", "64")
    result = _cli("--out", str(out), *args, "--layout", "cityscapes")
    assert result.returncode == 0, result.stderr
    assert "cityscapes layout" in result.stdout
    assert synthetic.read_manifest(out)["params"]["layout"] == "cityscapes"
    assert len(_pairs(out, "train", "cityscapes")) == 1
    result = _cli("--out", str(tmp_path / "bad"), *args, "--layout", "kitti")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "valid: idd, cityscapes" in lines[0], result.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_rejects_a_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = _cli("--out", str(tmp_path), "--train", "1", "--height", "32", "--width", "64")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
