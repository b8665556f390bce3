"""Polygon JSON -> level-3 label PNGs (jaxseg.data.prepare), checked against hand-made labels."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from jaxseg import files
from jaxseg.data import formats, prepare, sources
from jaxseg.data.labels import IDD_LABELS, IDD_LEVEL3, idd_level3_id
from jaxseg.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# Part I (png, 40x30): overlaps, a deleted object, a 2-point polygon, a group label, the
# "parking" alias of drivable fallback, out-of-image vertices, float vertices, void on top.
OBJECTS_A = [
    {"label": "road", "polygon": rect(0, 0, 39, 29)},
    {"label": "cargroup", "polygon": rect(2, 3, 10, 12)},
    {"label": "person", "polygon": rect(8, 10, 15, 20)},
    {"label": "sky", "deleted": 1, "polygon": rect(0, 0, 39, 29)},
    {"label": "sky", "polygon": [[0, 0], [39, 29]]},
    {"label": "vegetation", "polygon": rect(30, -10, 60, 8)},
    {"label": "parking", "polygon": [[20, 14], [34, 14], [27, 24]]},
    {"label": "polegroup", "polygon": rect(36, 10, 38, 28)},
    {"label": "rail track", "polygon": [[1.5, 22.2], [12.7, 21.1], [9.3, 27.9]]},
    {"label": "ego vehicle", "polygon": rect(0, 26, 39, 35)},
]
# Part II (jpg, 24x16): fallback labels, void over a vehicle, a polygon wholly outside the
# image, a deleted object whose label is unknown (deleted objects are never looked up).
OBJECTS_B = [
    {"label": "fallback background", "polygon": rect(0, 0, 23, 5)},
    {"label": "autorickshaw", "polygon": rect(4, 6, 12, 14)},
    {"label": "license plate", "polygon": rect(6, 11, 9, 12)},
    {"label": "animal", "polygon": [[-100, -100], [-50, -100], [-50, -50]]},
    {"label": "drivable fallback", "polygon": rect(14, 8, 30, 40)},
    {"label": "mystery", "deleted": True, "polygon": rect(0, 0, 5, 5)},
]
# val, Part I (png, 20x12): no objects at all -> all void.
OBJECTS_C = []


def pil_mask(size, points):
    """Where PIL's polygon fill of one object lands, drawn alone: [H, W] bool."""
    h, w = size
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(mask).astype(bool)


def expected_a():
    label = np.zeros((30, 40), np.uint8)  # road everywhere
    label[3:13, 2:11] = 9  # car (cargroup), corners inclusive
    label[10:21, 8:16] = 4  # person over car
    label[0:9, 30:40] = 24  # vegetation, clipped at the top and right
    label[pil_mask((30, 40), OBJECTS_A[6]["polygon"])] = 1  # parking = drivable fallback
    label[10:29, 36:39] = 20  # polegroup = pole
    label[pil_mask((30, 40), OBJECTS_A[8]["polygon"])] = 3  # rail track = non-drivable fb
    label[26:30, :] = 255  # ego vehicle, clipped at the bottom
    return label


def expected_b():
    label = np.full((16, 24), 255, np.uint8)
    label[0:6, :] = 25  # fallback background = sky
    label[6:15, 4:13] = 8  # autorickshaw
    label[11:13, 6:10] = 255  # license plate is void
    label[8:16, 14:24] = 1  # drivable fallback, clipped
    return label


CASES = {
    # json path relative to root: (image path, (h, w), objects, expected label)
    "gtFine/train/0/000001_gtFine_polygons.json": (
        "leftImg8bit/train/0/000001_leftImg8bit.png",
        (30, 40),
        OBJECTS_A,
        expected_a,
    ),
    "gtFine/train/201/frame0001_gtFine_polygons.json": (
        "leftImg8bit/train/201/frame0001_leftImg8bit.jpg",
        (16, 24),
        OBJECTS_B,
        expected_b,
    ),
    "gtFine/val/1/000002_gtFine_polygons.json": (
        "leftImg8bit/val/1/000002_leftImg8bit.png",
        (12, 20),
        OBJECTS_C,
        lambda: np.full((12, 20), 255, np.uint8),
    ),
}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.fixture
def idd_root(tmp_path):
    for json_name, (image_name, (h, w), objects, _) in CASES.items():
        write_json(tmp_path / json_name, {"imgHeight": h, "imgWidth": w, "objects": objects})
        image = tmp_path / image_name
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(image)
    return tmp_path


def run_cli(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_writes_labels_equal_to_hand_rasterisation(idd_root):
    result = run_cli("jaxseg.data.prepare", "--idd-root", idd_root, "--workers", 2)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 label PNGs" in result.stdout
    for json_name, (_, size, _, expected) in CASES.items():
        out = prepare.label_path_for(idd_root / json_name)
        with Image.open(out) as image:
            assert image.mode == "L" and image.format == "PNG"
            got = np.asarray(image)
        assert got.shape == size
        np.testing.assert_array_equal(got, expected(), err_msg=json_name)


def test_prepared_root_pairs_images_and_labels_of_both_parts(idd_root):
    prepare.prepare_root(idd_root)
    source = formats.open_split(idd_root, "train")
    assert [e.name for e in source] == ["000001", "frame0001"]
    for example in source:
        decoded = sources.load_example(example, IDD_LEVEL3)
        assert decoded["label"].shape == decoded["image"].shape[:2]
    assert sources.load_example(source[0], IDD_LEVEL3)["label"][0, 0] == 0


def test_second_run_skips_and_keeps_mtime(idd_root):
    assert prepare.prepare_root(idd_root) == {"written": 3, "skipped": 0}
    outs = [prepare.label_path_for(idd_root / name) for name in CASES]
    mtimes = [p.stat().st_mtime_ns for p in outs]
    assert prepare.prepare_root(idd_root) == {"written": 0, "skipped": 3}
    assert [p.stat().st_mtime_ns for p in outs] == mtimes
    # An edited JSON (newer than its PNG) is redone, and only it.
    json_path = idd_root / next(iter(CASES))
    later = outs[0].stat().st_mtime_ns + 10**9
    os.utime(json_path, ns=(later, later))
    assert prepare.prepare_root(idd_root) == {"written": 1, "skipped": 2}
    assert [p.stat().st_mtime_ns for p in outs][1:] == mtimes[1:]


def test_label_table_follows_idd():
    # Class names are their own ids (classes.py), the aliases and voids of IDD (docs/datasets.md).
    for index, name in enumerate(IDD_LEVEL3.class_names):
        assert idd_level3_id(name) == index
    aliases = {
        "parking": 1,
        "rail track": 3,
        "animal": 4,
        "caravan": 12,
        "trailer": 12,
        "train": 12,
        "polegroup": 20,
        "tunnel": 23,
        "fallback background": 25,
    }
    voids = ["unlabeled", "ego vehicle", "rectification border", "out of roi", "license plate"]
    assert {name: idd_level3_id(name) for name in aliases} == aliases
    assert all(idd_level3_id(name) == 255 for name in voids)
    assert len(IDD_LABELS) == 40  # anue_labels.py lists ids 0-39.
    assert idd_level3_id("cargroup") == 9
    assert idd_level3_id("persongroup") == 4
    assert idd_level3_id("group") is None
    assert idd_level3_id("Car") is None


HOSTILE_JSON = {
    "unknown_label": ({"imgWidth": 4, "imgHeight": 4, "objects": [
        {"label": "spaceship", "polygon": rect(0, 0, 2, 2)}]}, "spaceship"),
    "not_an_object": ([1, 2, 3], "top level"),
    "missing_height": ({"imgWidth": 4, "objects": []}, "imgHeight"),
    "objects_not_list": ({"imgWidth": 4, "imgHeight": 4, "objects": {}}, "objects"),
    "label_not_string": ({"imgWidth": 4, "imgHeight": 4, "objects": [
        {"label": 3, "polygon": rect(0, 0, 2, 2)}]}, "label"),
    "string_coordinate": ({"imgWidth": 4, "imgHeight": 4, "objects": [
        {"label": "road", "polygon": [[0, 0], ["a", 1], [2, 2]]}]}, "vertex"),
    "nan_coordinate": ('{"imgWidth": 4, "imgHeight": 4, "objects": [{"label": "road", '
                       '"polygon": [[0, 0], [NaN, 1], [2, 2]]}]}', "not finite"),
    "inf_coordinate": ('{"imgWidth": 4, "imgHeight": 4, "objects": [{"label": "road", '
                       '"polygon": [[0, 0], [1, -Infinity], [2, 2]]}]}', "not finite"),
    "bool_coordinate": ({"imgWidth": 4, "imgHeight": 4, "objects": [
        {"label": "road", "polygon": [[0, 0], [True, 1], [2, 2]]}]}, "vertex"),
    "three_numbers": ({"imgWidth": 4, "imgHeight": 4, "objects": [
        {"label": "road", "polygon": [[0, 0, 0], [1, 1], [2, 2]]}]}, "vertex"),
    "zero_width": ({"imgWidth": 0, "imgHeight": 4, "objects": []}, "imgWidth"),
    "float_size": ({"imgWidth": 4.5, "imgHeight": 4, "objects": []}, "imgWidth"),
    "truncated_json": ('{"imgWidth": 4, "imgHeight": 4, "obj', "not valid JSON"),
    "binary": (b"\xff\xfe\x00\x01garbage", "not valid JSON"),
}  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_JSON)
def test_hostile_json_is_a_one_line_error_naming_the_file(tmp_path, case):
    data, expected_words = HOSTILE_JSON[case]
    good = tmp_path / "gtFine/train/0/000001_gtFine_polygons.json"
    bad = tmp_path / "gtFine/train/0/000002_gtFine_polygons.json"
    write_json(good, {"imgWidth": 4, "imgHeight": 4, "objects": []})
    write_json(bad, data)
    result = run_cli("jaxseg.data.prepare", "--idd-root", tmp_path, "--workers", 1)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}") and expected_words in lines[0]
    assert not prepare.label_path_for(bad).exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_parallel_run_stops_on_a_bad_file_and_leaves_complete_files(tmp_path):
    for i in range(6):
        objects = [{"label": "road" if i != 3 else "teleporter", "polygon": rect(0, 0, 5, 5)}]
        write_json(
            tmp_path / f"gtFine/train/0/00000{i}_gtFine_polygons.json",
            {"imgWidth": 8, "imgHeight": 8, "objects": objects},
        )
    with pytest.raises(DataError, match="000003_gtFine_polygons.json.*'teleporter'"):
        prepare.prepare_root(tmp_path, workers=2)
    assert not list(tmp_path.rglob("*.tmp"))
    for png in tmp_path.rglob("*.png"):
        assert np.asarray(Image.open(png))[0, 0] == 0  # Every written PNG is whole.
    assert not (tmp_path / "gtFine/train/0/000003_gtFine_labellevel3Ids.png").exists()


def test_not_an_idd_root_is_an_error(tmp_path):
    result = run_cli("jaxseg.data.prepare", "--idd-root", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path}: not an IDD root (no gtFine/ or "
                                          "leftImg8bit/ folder)"]  # fmt: skip


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        files.write_atomic(b"data", tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


# Fuzzing: any JSON value either rasterises or is a DataError, never another exception.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
numbers = (
    st.integers(-50, 50)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.sampled_from([True, "1", None])
)
sizes = st.integers(-2, 40) | st.sampled_from([prepare.MAX_SIDE + 1, 2**40, 3.0, "8", True])
objects = st.fixed_dictionaries(
    {
        "label": st.sampled_from(["road", "cargroup", "sky", "ego vehicle", "nope", "group", 7]),
        "polygon": st.lists(st.lists(numbers, min_size=1, max_size=3), max_size=6) | json_values,
    },
    optional={"deleted": st.sampled_from([0, 1, True, False, "yes", None])},
)
annotations = st.fixed_dictionaries(
    {"imgWidth": sizes, "imgHeight": sizes, "objects": st.lists(objects, max_size=5)}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, annotations))
def test_fuzz_rasteriser_works_or_raises_data_error(data):
    try:
        annotation = prepare.parse_annotation(data, "fuzz.json")
    except DataError:
        return
    label = prepare.rasterize(annotation)
    assert label.shape == (annotation.height, annotation.width) and label.dtype == np.uint8
    assert set(np.unique(label)) <= set(range(26)) | {255}
