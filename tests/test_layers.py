"""Layer parity with PyTorch, and the CPU fast conv weight gradient against XLA's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import layers

torch = pytest.importorskip("torch")


def _nchw(a: jax.Array) -> np.ndarray:
    return np.asarray(a, np.float32).transpose(0, 3, 1, 2)


def _nhwc(a: np.ndarray) -> jax.Array:
    return jnp.asarray(a.transpose(0, 2, 3, 1))


def _torch_forward_backward(module, x: np.ndarray, seed: int = 1):
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    gt = torch.tensor(np.random.default_rng(seed).standard_normal(yt.shape).astype(np.float32))
    yt.backward(gt)
    return yt.detach().numpy(), gt.numpy(), xt.grad.numpy()


def _jax_forward_backward(module, variables, x: np.ndarray, g: np.ndarray):
    y, vjp = jax.vjp(lambda v, x_: module.apply(v, x_), variables, _nhwc(x))
    dv, dx = vjp(_nhwc(g))
    return _nchw(y), dv["params"], _nchw(dx)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(
    ("stride", "padding", "dilation"), [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)]
)
def test_conv2d_matches_torch(stride, padding, dilation, fast):
    x = np.random.default_rng(0).standard_normal((2, 5, 11, 14)).astype(np.float32)
    tconv = torch.nn.Conv2d(5, 7, 3, stride=stride, padding=padding, dilation=dilation)
    y_t, g, dx_t = _torch_forward_backward(tconv, x)
    conv = layers.Conv2d(7, 3, stride, padding, dilation, fast_weight_grad=fast)
    variables = {
        "params": {
            "kernel": jnp.asarray(tconv.weight.detach().numpy().transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(tconv.bias.detach().numpy()),
        }
    }
    y, dparams, dx = _jax_forward_backward(conv, variables, x, g)
    np.testing.assert_allclose(y, y_t, atol=1e-5)
    np.testing.assert_allclose(dx, dx_t, atol=1e-4)
    dk_t = tconv.weight.grad.numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(dparams["kernel"], dk_t, atol=1e-4 * np.abs(dk_t).max())
    np.testing.assert_allclose(dparams["bias"], tconv.bias.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_1x1_conv2d_matches_torch():
    """1x1 stride-1 convolutions are matmuls over channels; values and gradients as torch's."""
    x = np.random.default_rng(0).standard_normal((2, 26, 6, 10)).astype(np.float32)
    tconv = torch.nn.Conv2d(26, 32, 1, padding=0)
    y_t, g, dx_t = _torch_forward_backward(tconv, x)
    variables = {
        "params": {
            "kernel": jnp.asarray(tconv.weight.detach().numpy().transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(tconv.bias.detach().numpy()),
        }
    }
    y, dparams, dx = _jax_forward_backward(layers.Conv2d(32, 1, padding=0), variables, x, g)
    np.testing.assert_allclose(y, y_t, atol=1e-5)
    np.testing.assert_allclose(dx, dx_t, atol=1e-4)
    dk_t = tconv.weight.grad.numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(dparams["kernel"], dk_t, atol=1e-4 * np.abs(dk_t).max())


@pytest.mark.parametrize(
    ("method", "fast"), [("subpixel", False), ("subpixel", True), ("col2im", None)]
)
@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "output_padding"), [(3, 2, 1, 1), (2, 2, 0, 0)]
)
def test_conv_transpose2d_matches_torch(kernel_size, stride, padding, output_padding, method, fast):
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 7)).astype(np.float32)
    tconv = torch.nn.ConvTranspose2d(6, 4, kernel_size, stride, padding, output_padding)
    y_t, g, dx_t = _torch_forward_backward(tconv, x)
    conv = layers.ConvTranspose2d(
        4, kernel_size, stride, padding, output_padding, fast_weight_grad=fast, method=method
    )
    variables = {
        "params": {
            "kernel": jnp.asarray(tconv.weight.detach().numpy().transpose(2, 3, 0, 1)),
            "bias": jnp.asarray(tconv.bias.detach().numpy()),
        }
    }
    y, dparams, dx = _jax_forward_backward(conv, variables, x, g)
    assert y.shape == y_t.shape == (2, 4, 10, 14)
    np.testing.assert_allclose(y, y_t, atol=1e-5)
    np.testing.assert_allclose(dx, dx_t, atol=1e-4)
    dk_t = tconv.weight.grad.numpy().transpose(2, 3, 0, 1)
    np.testing.assert_allclose(dparams["kernel"], dk_t, atol=1e-4 * np.abs(dk_t).max())


def test_conv_transpose2d_rejects_unsupported_configurations():
    conv = layers.ConvTranspose2d(4, kernel_size=3, stride=2, padding=1, output_padding=0)
    with pytest.raises(ValueError, match="output_padding=0"):
        conv.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="unknown ConvTranspose2d method 'gemm'"):
        layers.ConvTranspose2d(4, method="gemm").init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


def _plain_weight_grad(x, g, kernel_hw, dilation):
    kernel = jnp.zeros((*kernel_hw, x.shape[-1], g.shape[-1]), x.dtype)
    _, vjp = jax.vjp(lambda k: layers._conv(x, k, ((0, 0), (0, 0)), dilation), kernel)
    return vjp(g)[0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize(
    ("kernel_hw", "dilation", "chunk_positions"),
    [((3, 3), (1, 1), 2048), ((3, 3), (1, 1), 40), ((3, 3), (2, 3), 64), ((2, 2), (1, 1), 1)],
)
def test_fast_weight_grad_equals_xla(kernel_hw, dilation, chunk_positions, dtype):
    """Single and several chunks (with a ragged last one), dilation, even kernels."""
    kx, kg = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 13, 17, 6), dtype)
    ho = 13 - dilation[0] * (kernel_hw[0] - 1)
    wo = 17 - dilation[1] * (kernel_hw[1] - 1)
    g = jax.random.normal(kg, (2, ho, wo, 5), dtype)
    fast = layers.conv_weight_grad(x, g, kernel_hw, dilation, chunk_positions)
    plain = _plain_weight_grad(x.astype(jnp.float32), g.astype(jnp.float32), kernel_hw, dilation)
    assert fast.dtype == jnp.float32
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_conv2d_fast_path_gradients_equal_plain(dtype):
    kx, kk = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (2, 16, 24, 8), dtype)
    kernel = (0.1 * jax.random.normal(kk, (3, 3, 8, 16))).astype(dtype)

    def grads(fast: bool):
        def loss(x_, k_):
            y = layers.conv2d(x_, k_, padding=((1, 1), (1, 1)), fast_weight_grad=fast)
            return jnp.sum(y.astype(jnp.float32) ** 2)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)

    (dx_fast, dk_fast), (dx_plain, dk_plain) = grads(True), grads(False)
    assert dk_fast.dtype == dk_plain.dtype == dtype
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(f32(dx_fast), f32(dx_plain), rtol=tol, atol=tol)
    scale = np.abs(f32(dk_plain)).max()
    np.testing.assert_allclose(f32(dk_fast), f32(dk_plain), rtol=tol, atol=tol * scale)


def test_set_fast_weight_grad_switches_the_traced_path():
    x, kernel = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 2))

    def traced() -> str:
        loss = lambda k: layers.conv2d(x, k, padding=((1, 1), (1, 1))).sum()  # noqa: E731
        return str(jax.make_jaxpr(jax.grad(loss))(kernel))

    try:
        layers.set_fast_weight_grad(True)
        assert "dot_general" in traced()  # The im2col matmul of the fast path.
        layers.set_fast_weight_grad(False)
        assert "dot_general" not in traced()
    finally:
        layers.set_fast_weight_grad(None)
    # Auto: a layer this small stays on XLA's convolution.
    assert "dot_general" not in traced()


def test_auto_uses_fast_weight_grad_for_large_layers_on_cpu():
    def uses_fast(x_shape, kernel_shape) -> bool:
        x, kernel = jnp.zeros(x_shape), jnp.zeros(kernel_shape)
        k = kernel_shape[0] // 2
        loss = lambda k_: layers.conv2d(x, k_, padding=((k, k), (k, k))).sum()  # noqa: E731
        return "dot_general" in str(jax.make_jaxpr(jax.grad(loss))(kernel))

    on_cpu = jax.default_backend() == "cpu"
    assert uses_fast((2, 256, 512, 64), (3, 3, 64, 64)) == on_cpu
    assert uses_fast((1, 8, 8, 4), (1, 1, 4, 4)) == on_cpu
    assert not uses_fast((2, 64, 128, 64), (3, 3, 64, 64))


def test_max_pool_and_bilinear_upsample_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 10)).astype(np.float32)
    xt = torch.tensor(x)
    pooled = torch.nn.functional.max_pool2d(xt, 2).numpy()
    np.testing.assert_array_equal(_nchw(layers.max_pool_2x2(_nhwc(x))), pooled)
    up = torch.nn.functional.interpolate(xt, scale_factor=2, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(_nchw(layers.upsample_bilinear_2x(_nhwc(x))), up.numpy(), atol=1e-6)
