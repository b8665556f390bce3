"""Augmentations keep image and label aligned, are deterministic, and fail loudly."""

import inspect
import pickle

import grain
import ml_collections
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jaxseg.data import augment
from jaxseg.data.labels import VOID
from jaxseg.errors import ConfigError

# A random colour per id, so the image encodes its label: image == PALETTE[label].
PALETTE = np.random.default_rng(1).integers(0, 256, (256, 3)).astype(np.uint8)


def blocky_example(height: int = 96, width: int = 128, block: int = 16, seed: int = 0) -> dict:
    blocks = np.random.default_rng(seed).integers(0, 26, (height // block, width // block))
    label = np.kron(blocks, np.ones((block, block), np.int64)).astype(np.uint8)
    return {"image": PALETTE[label], "label": label, "name": "synthetic"}


def assert_aligned(example: dict, margin: int = 2) -> None:
    """Image == PALETTE[label] at non-void pixels at least `margin` away from a boundary."""
    label, image = example["label"], example["image"]
    assert image.shape == (*label.shape, 3) and image.dtype == label.dtype == np.uint8
    size = 2 * margin + 1
    windows = sliding_window_view(np.pad(label, margin, mode="edge"), (size, size))
    interior = (windows == label[..., None, None]).all(axis=(-2, -1)) & (label != VOID)
    assert interior.sum() > (label != VOID).sum() // 4, "too few interior pixels to test"
    np.testing.assert_array_equal(image[interior], PALETTE[label[interior]])
    assert set(np.unique(label)) <= set(range(26)) | {VOID}  # Ids were never interpolated.


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("hflip", {"p": 1.0}),
        ("rotate", {"angle": 1.0}),
        ("rotate", {"angle": 30.0, "random": True}),
        ("scale_crop", {"min_scale": 0.5, "max_scale": 2.0, "height": 64, "width": 80}),
        ("scale_crop", {"min_scale": 0.5, "max_scale": 0.5}),  # Smaller than the crop: padded.
    ],
)
def test_geometric_augmentations_keep_image_and_label_aligned(name, params):
    fn = augment.get_augmentation(name, **params)
    for seed in range(3):
        out = fn(blocky_example(), rng(seed))
        assert out["name"] == "synthetic"
        assert_aligned(out)


def test_color_jitter_changes_the_image_only():
    example = blocky_example()
    out = augment.color_jitter(example, rng(), brightness=0.4, contrast=0.4, saturation=0.4)
    np.testing.assert_array_equal(out["label"], example["label"])
    assert out["image"].dtype == np.uint8 and out["image"].shape == example["image"].shape
    assert not np.array_equal(out["image"], example["image"])
    unchanged = augment.color_jitter(example, rng())
    np.testing.assert_array_equal(unchanged["image"], example["image"])


def test_flip_twice_is_identity_and_flip_mirrors():
    example = blocky_example()
    once = augment.hflip(example, rng(), p=1.0)
    np.testing.assert_array_equal(once["label"], example["label"][:, ::-1])
    twice = augment.hflip(once, rng(), p=1.0)
    for key in ("image", "label"):
        np.testing.assert_array_equal(twice[key], example[key])
    never = augment.hflip(example, rng(), p=0.0)
    np.testing.assert_array_equal(never["image"], example["image"])


def test_rotation_by_zero_is_identity():
    example = blocky_example()
    for params in ({"angle": 0.0}, {"angle": 0.0, "random": True}, {"angle": 360.0}):
        out = augment.rotate(example, rng(), **params)
        for key in ("image", "label"):
            np.testing.assert_array_equal(out[key], example[key])


def test_rotation_probability_mixes_rotated_and_original_examples():
    example = blocky_example()
    rotated = [
        not np.array_equal(augment.rotate(example, rng(seed), p=0.5)["label"], example["label"])
        for seed in range(40)
    ]
    assert 5 < sum(rotated) < 35
    never = augment.rotate(example, rng(), angle=10.0, p=0.0)
    np.testing.assert_array_equal(never["label"], example["label"])


def test_rotation_uncovers_corners_as_void_and_mean_colour():
    example = blocky_example()
    out = augment.rotate(example, rng(), angle=10.0)
    label, image = out["label"], out["image"]
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert label[corner] == VOID
        np.testing.assert_array_equal(image[corner], augment.MEAN_COLOR)
    assert (example["label"] != VOID).all() and (label == VOID).sum() > 0
    # The centre does not move.
    assert label[48, 64] == example["label"][48, 64]


def test_scale_crop_pads_with_void_and_mean_colour():
    example = blocky_example(96, 128)
    out = augment.scale_crop(example, rng(), min_scale=0.5, max_scale=0.5, height=64, width=80)
    assert out["label"].shape == (64, 80)
    # Scaled to 48x64 and padded at the bottom/right up to the 64x80 window.
    assert (out["label"][48:] == VOID).all() and (out["label"][:, 64:] == VOID).all()
    assert (out["label"][:48, :64] != VOID).all()
    assert (out["image"][48:] == augment.MEAN_COLOR).all()


def test_same_seed_same_output_and_seeds_differ():
    build = augment.build_augment(
        {
            "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3},
            "scale_crop": {"min_scale": 0.75, "max_scale": 1.5, "height": 64, "width": 64},
            "rotate": {"angle": 5.0, "random": True},
            "hflip": {"p": 0.5},
        }
    )
    example = blocky_example()
    first, again = build(example, rng(7)), build(example, rng(7))
    for key in ("image", "label"):
        np.testing.assert_array_equal(first[key], again[key])
    outputs = {build(example, rng(seed))["label"].tobytes() for seed in range(4)}
    assert len(outputs) > 1


def test_config_entries_apply_in_canonical_order():
    crop = {"min_scale": 1.0, "max_scale": 1.0, "width": 64}
    # Written flip first; applied crop first (canonical order), sharing one rng stream.
    config = ml_collections.ConfigDict({"hflip": {"p": 1.0}, "scale_crop": crop})
    example = blocky_example()
    out = augment.build_augment(config)(example, rng())
    stream = rng()
    expected = augment.hflip(augment.scale_crop(example, stream, **crop), stream, p=1.0)
    np.testing.assert_array_equal(out["label"], expected["label"])
    assert out["label"].shape == (96, 64)
    stream = rng()
    reversed_order = augment.scale_crop(augment.hflip(example, stream, p=1.0), stream, **crop)
    assert not np.array_equal(out["label"], reversed_order["label"])


def test_list_form_and_empty_config_and_pickling():
    example = blocky_example()
    flip_list = augment.build_augment([{"name": "hflip", "p": 1.0}])
    np.testing.assert_array_equal(flip_list(example, rng())["label"], example["label"][:, ::-1])
    for empty in (None, {}, [], ml_collections.ConfigDict()):
        out = augment.build_augment(empty)(example, rng())
        np.testing.assert_array_equal(out["image"], example["image"])
    restored = pickle.loads(pickle.dumps(flip_list))  # grain sends it to worker processes.
    np.testing.assert_array_equal(restored(example, rng())["label"], example["label"][:, ::-1])


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"mirror": {}}, "unknown augmentation 'mirror'; valid: scale_crop, rotate, hflip"),
        ([{"name": "blur"}], "unknown augmentation 'blur'"),
        ({"hflip": {"prob": 0.5}}, "unknown parameter 'prob' of augmentation 'hflip'; valid: p"),
        ({"rotate": {"degrees": 1}}, "valid: angle, random, p"),
        ({"hflip": {"p": 1.5}}, "p=1.5"),
        ({"scale_crop": {"min_scale": 2.0, "max_scale": 1.0}}, "min_scale <= max_scale"),
        ({"scale_crop": {"height": 0}}, "height=0"),
        ({"color_jitter": {"contrast": -0.1}}, "contrast=-0.1"),
        ({"hflip": 0.5}, "expected a mapping"),
        ([{"p": 0.5}], "has no 'name'"),
    ],
)
def test_bad_specs_raise_config_error(specs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        augment.build_augment(specs)


@pytest.mark.parametrize("name", list(augment.AUGMENTATIONS))
def test_defaults_pass_the_parameter_checks(name):
    fn = augment.AUGMENTATIONS[name]
    defaults = {
        key: param.default
        for key, param in inspect.signature(fn).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    bound = augment.get_augmentation(name, **defaults)
    np.testing.assert_array_equal(
        bound(blocky_example(), rng())["label"], fn(blocky_example(), rng())["label"]
    )


def test_grain_random_map_replays_the_same_augmentation():
    examples = [blocky_example(seed=i) for i in range(3)]
    fn = augment.build_augment({"rotate": {"angle": 10.0, "random": True}, "hflip": {"p": 0.5}})
    dataset = grain.MapDataset.source(examples).seed(3).random_map(fn)
    first = [dataset[i]["label"] for i in range(3)]
    again = [dataset[i]["label"] for i in range(3)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], examples[0]["label"])
