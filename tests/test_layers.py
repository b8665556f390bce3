"""Layer parity with PyTorch ("xla" kernels; the "cpu" ones are in test_cpu_kernels.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures.torch_parity import assert_conv_matches, nchw, nhwc

from jaxseg.models import layers

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("stride", "padding", "dilation"), [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)]
)
def test_conv2d_matches_torch(stride, padding, dilation):
    x = np.random.default_rng(0).standard_normal((2, 5, 11, 14)).astype(np.float32)
    tconv = torch.nn.Conv2d(5, 7, 3, stride=stride, padding=padding, dilation=dilation)
    assert_conv_matches(tconv, layers.Conv2d(7, 3, stride, padding, dilation), x)


@pytest.mark.parametrize(("dilation", "taps"), [(8, (1, 3)), (24, (1, 1)), (3, (3, 3))])
def test_dilated_conv2d_on_a_small_map_drops_the_taps_that_read_only_padding(dilation, taps):
    """On a 7x20 map, rate 8 leaves only the middle kernel row reading the input and rate 24
    only the centre tap; the result and all gradients are still torch's."""
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 20)).astype(np.float32)
    tconv = torch.nn.Conv2d(5, 7, 3, padding=dilation, dilation=dilation)
    assert_conv_matches(tconv, layers.Conv2d(7, 3, 1, dilation, dilation), x)

    def conv(x, kernel):
        pad = ((dilation, dilation), (dilation, dilation))
        return layers.conv2d(x, kernel, padding=pad, dilation=(dilation, dilation))

    jaxpr = jax.make_jaxpr(conv)(nhwc(x), jnp.zeros((3, 3, 5, 7)))
    products = [
        e for e in jaxpr.eqns if e.primitive.name in ("conv_general_dilated", "dot_general")
    ]
    assert len(products) == 1
    kernel_shape = products[0].invars[1].aval.shape
    assert (kernel_shape[:2] if len(kernel_shape) == 4 else (1, 1)) == taps


def test_1x1_conv2d_matches_torch():
    """1x1 stride-1 convolutions are matmuls over channels; values and gradients as torch's."""
    x = np.random.default_rng(0).standard_normal((2, 26, 6, 10)).astype(np.float32)
    assert_conv_matches(torch.nn.Conv2d(26, 32, 1, padding=0), layers.Conv2d(32, 1, padding=0), x)


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "output_padding"), [(3, 2, 1, 1), (2, 2, 0, 0)]
)
def test_conv_transpose2d_matches_torch(kernel_size, stride, padding, output_padding):
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 7)).astype(np.float32)
    tconv = torch.nn.ConvTranspose2d(6, 4, kernel_size, stride, padding, output_padding)
    conv = layers.ConvTranspose2d(4, kernel_size, stride, padding, output_padding)
    y, _ = jax.eval_shape(conv.init_with_output, jax.random.key(0), nhwc(x))
    assert y.shape == (2, 10, 14, 4)
    assert_conv_matches(tconv, conv, x)


def test_conv_transpose2d_rejects_unsupported_configurations():
    conv = layers.ConvTranspose2d(4, kernel_size=3, stride=2, padding=1, output_padding=0)
    with pytest.raises(ValueError, match="output_padding=0"):
        conv.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("layer", [layers.Conv2d, layers.ConvTranspose2d])
@pytest.mark.parametrize("kernels", ["auto", "gemm"])
def test_layers_reject_unresolved_or_unknown_kernels(layer, kernels):
    with pytest.raises(ValueError, match=f"unknown layer kernels '{kernels}'; valid: xla, cpu"):
        layer(4, kernels=kernels).init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


def test_max_pool_matches_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 10)).astype(np.float32)
    pooled = torch.nn.functional.max_pool2d(torch.tensor(x), 2).numpy()
    np.testing.assert_array_equal(nchw(layers.max_pool_2x2(nhwc(x))), pooled)


@pytest.mark.parametrize(
    "size",
    [(12, 20), (48, 80), (6, 20), (9, 13), (3, 4), (6, 10)],
    ids=["x2", "x8", "x1-x2", "non-integer", "down", "same"],
)
def test_resize_bilinear_matches_torch_values_and_gradients(size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 10)).astype(np.float32)
    cotangent = rng.standard_normal((2, 3, *size)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, size=size, mode="bilinear", align_corners=False)
    yt.backward(torch.tensor(cotangent))
    y, vjp = jax.vjp(lambda v: layers.resize_bilinear(v, size), nhwc(x))
    (grad,) = vjp(nhwc(cotangent))
    np.testing.assert_allclose(nchw(y), yt.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(nchw(grad), xt.grad.numpy(), atol=1e-5)
    assert layers.resize_bilinear(nhwc(x).astype(jnp.bfloat16), size).dtype == jnp.bfloat16


def test_max_pool_gradient_goes_to_the_first_maximum_as_in_torch():
    """Integer inputs tie often; torch sends a window's gradient to its first maximum."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 3, 6, 10)).astype(np.float32)
    cotangent = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2).backward(torch.tensor(cotangent))
    _, vjp = jax.vjp(layers.max_pool_2x2, nhwc(x))
    (grad,) = vjp(nhwc(cotangent))
    windows = x.reshape(2, 3, 3, 2, 5, 2)
    assert (windows == windows.max((3, 5), keepdims=True)).sum() > windows.size // 4  # Ties.
    np.testing.assert_array_equal(nchw(grad), xt.grad.numpy())


def _batch_normalize_by_autodiff(x, scale, bias, epsilon):
    mean = jnp.mean(x, (0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
    return (x - mean) / jnp.sqrt(var + epsilon) * scale + bias, mean, var


def test_batch_normalize_backward_equals_autodiff_of_its_forward():
    """All three outputs get a cotangent; the activations sit far from zero (cancellation)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 7, 3)) * 3 + 20, jnp.float32)
    scale, bias = jnp.asarray([0.5, 2.0, -1.0]), jnp.asarray([0.1, 0.0, -0.3])
    cotangents = tuple(jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x.shape, 3, 3))
    outputs, vjp = jax.vjp(lambda *a: layers.batch_normalize(*a, 1e-5, None), x, scale, bias)
    expected_outputs, expected_vjp = jax.vjp(
        lambda *a: _batch_normalize_by_autodiff(*a, 1e-5), x, scale, bias
    )
    for got, want in zip(outputs, expected_outputs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for got, want in zip(vjp(cotangents), expected_vjp(cotangents), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_synchronised_batch_normalize_equals_one_device_on_the_whole_batch():
    """Under pmap with an axis name, the input gradient is that of the whole batch on one
    device; the parameters' gradients are each device's share of the sum."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 3, 5, 2)) * 2 + 1, jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    scale, bias = jnp.asarray([1.5, -0.5]), jnp.asarray([0.2, 0.4])

    def gradients(x, cotangent, scale, bias, axis_name=None):
        def loss(x, scale, bias):
            y, _, _ = layers.batch_normalize(x, scale, bias, 1e-5, axis_name)
            return jnp.sum(y * cotangent)

        return jax.grad(loss, argnums=(0, 1, 2))(x, scale, bias)

    whole = gradients(x, cotangent, scale, bias)
    split = functools.partial(gradients, axis_name="batch")
    dx, d_scale, d_bias = jax.pmap(split, "batch", in_axes=(0, 0, None, None))(
        x.reshape(2, 2, 3, 5, 2), cotangent.reshape(2, 2, 3, 5, 2), scale, bias
    )
    np.testing.assert_allclose(dx.reshape(x.shape), whole[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_scale.sum(0), whole[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_bias.sum(0), whole[2], rtol=1e-5, atol=1e-5)
