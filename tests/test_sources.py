"""Folder and CSV sources, the CSV list writer and pixel statistics, hostile input included."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import idd_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxseg.data import csv_lists, formats, sources, stats
from jaxseg.data.labels import CITYSCAPES, IDD_LEVEL1, IDD_LEVEL2, IDD_LEVEL3, label_counts
from jaxseg.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TRAIN_NAMES = ["000001", "000002", "201/frame0001", "202/frame0001", "frame0002"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "idd"
    return root, idd_fixture.make_labelled_root(root)


def run_cli(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert str(word) in lines[0]


def test_folder_source_pairs_both_parts_of_mixed_sizes(root):
    root, labels = root
    source = formats.open_split(root, "train")
    # Ids repeated across sequence folders keep the folder in their name.
    assert [e.name for e in source] == TRAIN_NAMES
    for example in source:
        decoded = sources.load_example(example, IDD_LEVEL3)
        np.testing.assert_array_equal(decoded["label"], labels[example.label_path])
        assert decoded["image"].shape == (*decoded["label"].shape, 3)
        assert decoded["image"].dtype == np.uint8
    assert (
        Path(source[2].image_path).suffix == ".jpg" and Path(source[0].image_path).suffix == ".png"
    )


def test_unlabelled_split(root):
    root, _ = root
    with pytest.raises(DataError, match="no label"):
        formats.open_split(root, "test")
    (example,) = formats.open_split(root, "test", require_labels=False)
    decoded = sources.load_example(example, IDD_LEVEL3)
    assert (decoded["label"] == 255).all() and decoded["label"].shape == (12, 20)


def test_png_and_jpg_of_one_id_is_an_error(root):
    root, _ = root
    idd_fixture.write_image(root / "leftImg8bit/train/0/000001_leftImg8bit.jpg", (12, 20), 0)
    with pytest.raises(DataError, match="both a .png and a .jpg"):
        formats.open_split(root, "train")


def test_label_ids_void_26_is_255_and_unknown_ids_are_errors(tmp_path):
    path = tmp_path / "l.png"
    Image.fromarray(np.array([[0, 25, 26, 255]], np.uint8)).save(path)
    np.testing.assert_array_equal(sources.read_label(str(path), IDD_LEVEL3), [[0, 25, 255, 255]])
    Image.fromarray(np.array([[0, 30]], np.uint8)).save(path)
    with pytest.raises(DataError, match="label id 30 is not an id of idd_level3"):
        sources.read_label(str(path), IDD_LEVEL3)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "l.jpg")
    with pytest.raises(DataError, match="expected a PNG"):
        sources.read_label(str(tmp_path / "l.jpg"), IDD_LEVEL3)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_images_are_data_errors(tmp_path, ext):
    path = tmp_path / f"x.{ext}"
    idd_fixture.write_image(path, (64, 96), 0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    # Pillow opens a truncated file happily; the error comes only when decoding.
    with Image.open(path) as image:
        assert image.size == (96, 64)
    with pytest.raises(DataError, match=f"{path}: cannot decode image"):
        sources.read_image(str(path))
    with pytest.raises(DataError, match=f"{path}: cannot decode image"):
        sources.verify_image(path.read_bytes(), str(path))


def test_csv_source_relative_and_absolute_paths(root, tmp_path):
    root, labels = root
    folder = tmp_path / "lists"
    folder.mkdir()
    first = formats.open_split(root, "train")[0]
    rows = [
        f"../idd/leftImg8bit/train/0/000001_leftImg8bit.png,{first.label_path}",
        "",  # Blank lines are skipped.
        " ../idd/leftImg8bit/val/1/000003_leftImg8bit.png , ../idd/gtFine/val/1/"
        "000003_gtFine_labellevel3Ids.png",
    ]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    source = formats.open_split(folder, "train")
    assert [e.name for e in source] == ["000001", "000003"]
    for example in source:
        label = sources.load_example(example, IDD_LEVEL3)["label"]
        np.testing.assert_array_equal(label, labels[str(Path(example.label_path).resolve())])


def test_csv_lists_are_deterministic_by_seed_and_readable(root, tmp_path):
    root, labels = root
    counts = csv_lists.write_csv_lists(root, tmp_path / "a", seed=3)
    csv_lists.write_csv_lists(root, tmp_path / "b", seed=3)
    csv_lists.write_csv_lists(root, tmp_path / "c", seed=4)
    texts = {d: [(tmp_path / d / f"{s}.csv").read_text() for s in ("train", "val", "test")]
             for d in "abc"}  # fmt: skip
    assert texts["a"] == texts["b"] and texts["a"] != texts["c"]
    # 7 labelled pairs (train + val) split 4:2:1 like the course's 4019/2010/1005.
    assert counts == {"train": 4, "val": 2, "test": 1}
    names = []
    for split in ("train", "val", "test"):
        source = formats.open_split(tmp_path / "a", split)
        assert len(source) == counts[split]
        for example in source:
            label = sources.load_example(example, IDD_LEVEL3)["label"]
            np.testing.assert_array_equal(label, labels[str(Path(example.label_path).resolve())])
            names.append(Path(example.image_path).resolve())
    assert len(set(names)) == 7  # Disjoint and complete.
    assert not any(line.startswith("/") for line in texts["a"][0].splitlines())  # Relative.


def test_csv_lists_cli(root, tmp_path):
    root, _ = root
    out = tmp_path / "lists"
    (out).mkdir()
    (out / "test.csv").write_text("stale\n")
    result = run_cli("jaxseg.data.csv_lists", "--idd-root", root, "--out", out,
                     "--test-fraction", 0, "--val-fraction", 0.5, "--splits", "train")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["train.csv:", "2", "pairs,", "val.csv:", "3", "pairs"]
    assert not (out / "test.csv").exists()


def test_label_counts_put_every_id_past_the_classes_last():
    label = np.array([[0, 1, 1, 3], [4, 26, 255, 2]], np.uint8)
    counts = label_counts(label, 4)
    assert counts.dtype == np.int64 and counts.tolist() == [1, 2, 1, 1, 3]
    # With 19 classes only 26 and 255 are void.
    assert label_counts(label, 19).tolist() == [1, 2, 1, 1, 1] + [0] * 14 + [2]


def test_pixel_counts_equal_bincount(root, tmp_path):
    root, labels = root
    source = formats.open_split(root, "train")
    expected = np.zeros(27, np.int64)
    for example in source:
        label = labels[example.label_path]
        ids = np.where(label == 255, 26, label)
        expected += np.bincount(ids.ravel(), minlength=27)
    np.testing.assert_array_equal(stats.pixel_counts(source), expected)

    out = tmp_path / "out" / "counts.json"
    result = run_cli("jaxseg.data.stats", "--data", root, "--split", "train", "--out", out)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["counts"] == expected.tolist() and written["images"] == 5
    assert written["classes"][0] == "road" and written["classes"][26] == "unlabeled"


def break_label_mode(root):
    path = idd_fixture.label_path(root, "train", "0", "000002")
    Image.new("RGB", (24, 16)).save(path)
    return path


def break_label_size(root):
    path = idd_fixture.label_path(root, "train", "201", "frame0001")
    Image.fromarray(np.zeros((17, 32), np.uint8)).save(path)
    return path


def break_label_data(root):
    path = idd_fixture.label_path(root, "train", "202", "frame0002")
    path.write_bytes(path.read_bytes()[:-30])
    return path


def empty_split(root):
    for path in (root / "leftImg8bit" / "train").rglob("*.*"):
        path.unlink()
    return root / "leftImg8bit" / "train"


def csv_one_column(root):
    (root / "train.csv").write_text("only_one.png\n")
    return f"{root / 'train.csv'}:1: expected 2 columns"


def csv_missing_file(root):
    idd_fixture.write_image(root / "a.png", (4, 4), 0)
    (root / "train.csv").write_text(f"a.png,{root / 'missing.png'}\n")
    return root / "missing.png"


def csv_binary(root):
    (root / "train.csv").write_bytes(b"\xff\xfe\x00\x81garbage\n")
    return root / "train.csv"


@pytest.mark.parametrize(
    "breaker",
    [break_label_mode, break_label_size, break_label_data, empty_split],
)
def test_stats_cli_hostile_folder_input(root, breaker):
    root, _ = root
    named = breaker(root)
    result = run_cli("jaxseg.data.stats", "--data", root, "--split", "train")
    assert_one_line_error(result, named)


@pytest.mark.parametrize("breaker", [csv_one_column, csv_missing_file, csv_binary])
def test_stats_cli_hostile_csv(tmp_path, breaker):
    named = breaker(tmp_path)
    result = run_cli("jaxseg.data.stats", "--data", tmp_path, "--split", "train")
    assert_one_line_error(result, named)


def test_csv_one_column_allowed_for_unlabelled_lists(root, tmp_path):
    root, _ = root
    image = idd_fixture.image_path(root, "test", "2", "000004", "png")
    (tmp_path / "test.csv").write_text(f"{image}\n")
    (example,) = formats.open_split(tmp_path, "test", require_labels=False)
    assert example.label_path is None and example.name == "000004"


# Fuzzing: any bytes, and damaged PNGs of every mode, decode to ids or raise DataError.
MODES = ["L", "P", "RGB", "RGBA", "I;16", "1", "LA"]


def png_bytes(mode: str, height: int, width: int, seed: int) -> bytes:
    ids = np.array([*range(26), 255], np.uint8)  # Valid label ids, so some inputs decode.
    values = np.random.default_rng(seed).choice(ids, (height, width))
    image = (
        Image.fromarray(values).convert(mode)
        if mode != "I;16"
        else Image.fromarray(values.astype(np.uint16))
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def damaged_pngs(draw):
    data = bytearray(
        png_bytes(
            draw(st.sampled_from(MODES)),
            draw(st.integers(1, 12)),
            draw(st.integers(1, 12)),
            draw(st.integers(0, 3)),
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | damaged_pngs(), st.sampled_from([None, (4, 4), (12, 12)]))
def test_fuzz_label_reader_works_or_raises_data_error(data, expected_size):
    try:
        label = sources.decode_label(data, "fuzz.png", IDD_LEVEL3, expected_size)
    except DataError:
        return
    assert label.dtype == np.uint8 and label.ndim == 2
    assert expected_size is None or label.shape == expected_size
    assert set(np.unique(label)) <= set(range(26)) | {255}


@settings(max_examples=100, deadline=None)
@given(damaged_pngs())
def test_fuzz_image_reader_works_or_raises_data_error(data):
    try:
        image = sources.decode_image(data, "fuzz.png")
    except DataError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_idd_levels_map_level3_files_through_idds_hierarchy(root):
    """Levels 2 and 1 read the same level-3 files: every level-3 id has one level-2 and
    one level-1 id in IDD's table (e.g. car 9 -> level 2 'car' 7 -> level 1 'vehicle' 3)."""
    root, labels = root
    level3 = np.array([[0, 1, 9, 12, 20, 24, 25, 26, 255]], np.uint8)
    np.testing.assert_array_equal(
        IDD_LEVEL2.train_ids(level3, "x"), [[0, 1, 7, 8, 12, 14, 15, 255, 255]]
    )
    np.testing.assert_array_equal(
        IDD_LEVEL1.train_ids(level3, "x"), [[0, 0, 3, 3, 4, 5, 6, 255, 255]]
    )
    source = formats.open_split(root, "train", labels="idd_level1")
    assert source.label_space is IDD_LEVEL1
    example = source[0]
    np.testing.assert_array_equal(
        sources.load_example(example, IDD_LEVEL1)["label"],
        IDD_LEVEL1.train_ids(labels[example.label_path], "x"),
    )
    with pytest.raises(ConfigError, match="data.labels='cityscapes' does not fit idd"):
        formats.open_split(root, "train", labels="cityscapes")
    with pytest.raises(ConfigError, match="unknown label space 'idd_level4'"):
        formats.open_split(root, "train", labels="idd_level4")


def test_cityscapes_folders_are_recognised_and_read_as_train_ids(tmp_path):
    root = tmp_path / "cityscapes"
    stem = "aachen_000000_000019"
    image = root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png"
    label = root / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png"
    idd_fixture.write_image(image, (4, 6), 0)
    stored = np.array([[7, 8, 26, 33, 0, 3], [22, 23, 24, 5, 255, 19]] * 2, np.uint8)
    label.parent.mkdir(parents=True)
    Image.fromarray(stored).save(label)
    (label.parent / f"{stem}_gtFine_color.png").write_bytes(b"not used")
    dataset = formats.open_dataset(root)
    assert dataset.format.name == "cityscapes" and dataset.label_space is CITYSCAPES
    (example,) = dataset.split("train")
    ids = sources.load_example(example, CITYSCAPES)["label"]
    np.testing.assert_array_equal(ids[:2], [[0, 1, 13, 18, 255, 255], [9, 10, 11, 255, 255, 6]])
    Image.fromarray(np.full((4, 6), 40, np.uint8)).save(label)
    with pytest.raises(DataError, match="label id 40 is not an id of cityscapes"):
        sources.load_example(example, CITYSCAPES)


def test_cityscapes_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    evaluated = sorted((x for x in labels.labels if not x.ignoreInEval), key=lambda x: x.trainId)
    assert tuple(x.name for x in evaluated) == CITYSCAPES.class_names
    assert tuple(x.id for x in evaluated) == CITYSCAPES.output_ids
    assert tuple(x.color for x in evaluated) == CITYSCAPES.palette
    for x in labels.labels:
        if 0 <= x.id < 256:
            expected = 255 if x.ignoreInEval else x.trainId
            assert int(CITYSCAPES.train_ids(np.array([[x.id]], np.uint8), "x")[0, 0]) == expected


def test_not_a_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a dataset"):
        formats.open_dataset(tmp_path)
    with pytest.raises(DataError, match="no such data folder"):
        formats.open_dataset(tmp_path / "missing")
