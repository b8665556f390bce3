"""Evaluation modes (jaxseg.segment): sliding windows against a NumPy reference, slide with
one window equals whole, flip TTA equals the hand-computed mean of the two passes, scales,
and the config's checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import config as config_lib
from jaxseg import segment
from jaxseg.errors import ConfigError

K = 5
DIMS = ("NHWC", "HWIO", "NHWC")

# Compiled, as every caller runs it: op by op, a U-Net pass takes seconds.
_run = jax.jit(segment.log_probabilities, static_argnums=(0, 2, 3))


@pytest.fixture(scope="module")
def unet():
    """A small random conv net standing in for a model (normalised images -> logits): two
    3x3 convolutions and a stride-2 pooling, so outputs depend on neighbours, borders and
    the input's size. (Compiling a real U-Net takes a minute on a loaded 2-core CPU.)"""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    w1 = jax.random.normal(k1, (3, 3, 3, 8)) / 5
    w2 = jax.random.normal(k2, (3, 3, 8, K)) / 5

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DIMS)

    def forward(x):
        h = jax.nn.relu(conv(x, w1))
        pooled = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        up = jnp.repeat(jnp.repeat(pooled / 4, 2, axis=1), 2, axis=2)
        return conv(up, w2)

    return jax.jit(forward)


def _images(batch, height, width, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (batch, height, width, 3))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_window_starts_cover_the_axis_and_end_flush():
    assert segment.window_starts(10, 4, 3) == [0, 3, 6]
    assert segment.window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert segment.window_starts(4, 4, 3) == [0]
    assert segment.window_starts(3, 4, 3) == [0]


def test_slide_averages_window_logits_like_numpy():
    # A forward whose output depends on the whole window (its mean), so every window
    # gives different logits for a shared pixel and the average matters.
    w = np.arange(3 * K, dtype=np.float32).reshape(3, K) / 10

    def forward(x):
        return x @ w + x.mean(axis=(1, 2, 3))[:, None, None, None]

    x = np.asarray(_images(2, 7, 11))
    options = segment.Options(mode="slide", crop=(4, 6), stride=(2, 4), multiple=1)
    got = segment._slide(forward, jnp.asarray(x), options)
    total, count = np.zeros((2, 7, 11, K)), np.zeros((7, 11, 1))
    for top in (0, 2, 3):
        for left in (0, 4, 5):
            window = x[:, top : top + 4, left : left + 6]
            total[:, top : top + 4, left : left + 6] += np.asarray(forward(window))
            count[top : top + 4, left : left + 6] += 1
    np.testing.assert_allclose(got, total / count, rtol=1e-5, atol=1e-5)


def test_slide_with_a_crop_equal_to_the_image_equals_whole(unet):
    x = _images(2, 38, 70)  # Not a multiple of 32: both pad alike.
    whole = _run(unet, x, (38, 70), segment.Options(mode="whole"))
    options = segment.Options(mode="slide", crop=(38, 70), stride=(10, 10))
    slide = _run(unet, x, (38, 70), options)
    np.testing.assert_allclose(slide, whole, rtol=1e-6, atol=1e-6)


def test_flip_tta_is_the_mean_of_the_two_passes(unet):
    x = _images(2, 32, 64, seed=1)
    got = _run(unet, x, (32, 64), segment.Options(mode="whole", flip=True))
    plain = _softmax(np.asarray(unet(x), np.float64))
    flipped = _softmax(np.asarray(unet(x[:, :, ::-1]), np.float64))[:, :, ::-1]
    np.testing.assert_allclose(np.exp(got), (plain + flipped) / 2, rtol=1e-4, atol=1e-6)


def test_scales_average_probabilities_at_the_label_size(unet):
    x = _images(1, 32, 64, seed=2)
    options = segment.Options(mode="whole", scales=(1.0, 2.0))
    got = np.exp(_run(unet, x, (32, 64), options))
    double = jax.image.resize(x, (1, 64, 128, 3), "bilinear", antialias=False)
    large = jax.image.resize(unet(double), (1, 32, 64, K), "bilinear", antialias=False)
    expected = (
        _softmax(np.asarray(unet(x), np.float64)) + _softmax(np.asarray(large, np.float64))
    ) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_a_single_pass_is_log_softmax_of_the_logits(unet):
    x = _images(1, 32, 64, seed=3)
    got = _run(unet, x, (32, 64), segment.Options())
    np.testing.assert_allclose(got, jax.nn.log_softmax(unet(x)), rtol=1e-5, atol=1e-5)


def test_options_from_the_config():
    config = config_lib.defaults()
    config.data.height, config.data.width = 60, 90
    options = segment.options(config)
    assert options == segment.Options("resize", (60, 90), (40, 60), False, (1.0,), 32)
    config_lib.apply_overrides(config, ["eval.mode=slide", "eval.crop=[30, 30]", "eval.flip=True"])
    options = segment.options(config)
    assert (options.mode, options.crop, options.stride, options.flip) == (
        "slide",
        (30, 30),
        (20, 20),
        True,
    )
    assert options.record() == {"mode": "slide", "flip": True, "scales": [1.0]}


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("eval.mode=tiles", "eval.mode 'tiles'; valid: resize, whole, slide"),
        ("eval.crop=[0, 4]", "eval.crop=[0, 4]"),
        ("eval.stride=[4]", "eval.stride=[4]"),
        ("eval.scales=[]", "eval.scales=[]"),
    ],
)
def test_bad_options_are_config_errors(override, fragment):
    config = config_lib.defaults()
    config_lib.apply_overrides(config, [override])
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        segment.options(config)
