"""Layer parity with PyTorch ("xla" kernels; the "cpu" ones are in test_cpu_kernels.py)."""

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


def test_max_pool_and_bilinear_upsample_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 10)).astype(np.float32)
    xt = torch.tensor(x)
    pooled = torch.nn.functional.max_pool2d(xt, 2).numpy()
    np.testing.assert_array_equal(nchw(layers.max_pool_2x2(nhwc(x))), pooled)
    up = torch.nn.functional.interpolate(xt, scale_factor=2, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(nchw(layers.upsample_bilinear_2x(nhwc(x))), up.numpy(), atol=1e-6)
