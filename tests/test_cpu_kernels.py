"""The CPU kernels against PyTorch and plain XLA, their per-layer choice, and `resolve`.

Also: models built with kernels="cpu" and "xla" compute the same function, and both export
with a symbolic batch dimension.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures.torch_parity import assert_conv_matches

from jaxseg import cpu_kernels, models
from jaxseg.models import layers


def test_resolve():
    assert jax.default_backend() == "cpu"
    assert cpu_kernels.resolve("auto") == "cpu"
    assert cpu_kernels.resolve("cpu") == "cpu"
    assert cpu_kernels.resolve("xla") == "xla"
    for bad in ("gpu", "CPU", ""):
        with pytest.raises(ValueError, match=f"unknown kernels '{bad}'; valid: auto, cpu, xla"):
            cpu_kernels.resolve(bad)


# Parity with PyTorch through the layers, the thresholds forced so that every layer here
# takes the CPU kernel under test.


@pytest.mark.parametrize(("padding", "dilation"), [(2, 2), (8, 8), (1, 3)])
def test_conv2d_tap_matmuls_match_torch(monkeypatch, padding, dilation):
    """Rate 8 on a 7x9 map leaves every tap but the centre partly or wholly in the padding."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(cpu_kernels, "TAP_MATMULS_MIN_CHANNELS", 0)
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 9)).astype(np.float32)
    tconv = torch.nn.Conv2d(5, 7, 3, padding=padding, dilation=dilation)
    conv = layers.Conv2d(7, 3, padding=padding, dilation=dilation, kernels="cpu")
    assert_conv_matches(tconv, conv, x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize(
    ("padding", "dilation"),
    [(((3, 1), (0, 2)), (2, 1)), (((0, 0), (0, 0)), (2, 3)), (((12, 12), (12, 12)), (12, 12))],
)
def test_conv2d_tap_matmuls_equal_xla(padding, dilation, dtype):
    """Asymmetric, no and large padding; values, input and kernel gradients."""
    kx, kk = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (2, 10, 13, 6), dtype)
    kernel = jax.random.normal(kk, (3, 3, 6, 4), dtype)

    def xla(x, kernel):
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            (1, 1),
            padding,
            rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    taps = lambda x, k: cpu_kernels.conv2d_tap_matmuls(x, k, padding, dilation)  # noqa: E731
    got = jax.jit(taps)(x, kernel)
    assert got.dtype == dtype
    got = (got, *jax.jit(jax.grad(_loss(taps), argnums=(0, 1)))(x, kernel))
    # The reference in float32 on the same (rounded) inputs; bfloat16 is checked against it
    # to a fraction of each output's largest magnitude.
    x32, kernel32 = x.astype(jnp.float32), kernel.astype(jnp.float32)
    want = (xla(x32, kernel32), *jax.grad(_loss(xla), argnums=(0, 1))(x32, kernel32))
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        scale = float(jnp.abs(w).max())
        rtol, atol = (0.0, 2e-2 * scale) if dtype == jnp.bfloat16 else (1e-5, 1e-5 * scale)
        np.testing.assert_allclose(g.astype(np.float32), w, rtol=rtol, atol=atol)


def test_cpu_uses_tap_matmuls_for_dilated_layers_from_1024_channels():
    def ops(channels: int, dilation: int) -> str:
        def conv(x, k):
            pad = ((dilation, dilation), (dilation, dilation))
            return layers.conv2d(x, k, padding=pad, dilation=(dilation,) * 2, kernels="cpu")

        x, k = jnp.zeros((1, 8, 8, channels)), jnp.zeros((3, 3, channels, 4))
        return str(jax.make_jaxpr(conv)(x, k))

    assert "conv_general_dilated" not in ops(1024, 2)
    assert "conv_general_dilated" in ops(512, 2)
    assert "conv_general_dilated" in ops(1024, 1)


@pytest.mark.parametrize(("height", "kernel_size", "padding"), [(8, 3, 1), (8, 5, 2), (10, 3, 0)])
def test_conv2d_in_strips_matches_torch(monkeypatch, height, kernel_size, padding):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(cpu_kernels, "STRIPS_MIN_CHANNELS", 0)
    x = np.random.default_rng(0).standard_normal((2, 5, height, 7)).astype(np.float32)  # NCHW.
    pads = ((padding, padding), (padding, padding))
    assert cpu_kernels.use_strips(
        (2, height, 7, 5), (kernel_size,) * 2 + (5, 6), (1, 1), pads, (1, 1)
    )
    tconv = torch.nn.Conv2d(5, 6, kernel_size, padding=padding)
    conv = layers.Conv2d(6, kernel_size, padding=padding, kernels="cpu")
    assert_conv_matches(tconv, conv, x)


def test_cpu_uses_strips_for_stride_1_layers_from_64_channels_up_to_4m_elements():
    same = ((1, 1), (1, 1))
    assert cpu_kernels.use_strips((2, 16, 16, 64), (3, 3, 64, 4), (1, 1), same, (1, 1))
    assert not cpu_kernels.use_strips((2, 16, 16, 32), (3, 3, 32, 4), (1, 1), same, (1, 1))
    assert not cpu_kernels.use_strips((2, 18, 16, 64), (3, 3, 64, 4), (1, 1), same, (1, 1))
    assert not cpu_kernels.use_strips((2, 16, 16, 64), (3, 3, 64, 4), (1, 1), same, (2, 2))
    assert not cpu_kernels.use_strips((2, 16, 16, 64), (3, 3, 64, 4), (2, 2), same, (1, 1))
    # One image's input at most 2**22 elements: U-Net's 128 -> 64 and 64 -> 64 layers at
    # 256x512 keep XLA's weight gradient, 128 -> 128 at 128x256 takes strips.
    assert cpu_kernels.use_strips((2, 128, 256, 128), (3, 3, 128, 128), (1, 1), same, (1, 1))
    assert not cpu_kernels.use_strips((2, 256, 512, 128), (3, 3, 128, 64), (1, 1), same, (1, 1))
    assert not cpu_kernels.use_strips((2, 256, 512, 64), (3, 3, 64, 64), (1, 1), same, (1, 1))

    def jaxpr(kernels: str, channels: int) -> str:
        x = jnp.zeros((2, 16, 16, channels))
        loss = lambda k: layers.conv2d(x, k, padding=same, kernels=kernels).sum()  # noqa: E731
        return str(jax.make_jaxpr(jax.grad(loss))(jnp.zeros((3, 3, channels, 4))))

    # 2 images of 16 output rows as 8 strips of 4, each with a row above and below.
    assert "f32[8,6,16,64]" in jaxpr("cpu", 64)
    assert "f32[8,6,16,32]" not in jaxpr("cpu", 32)
    assert "f32[8,6,16,64]" not in jaxpr("xla", 64)


def test_materialize_is_an_identity_that_xla_keeps_apart():
    """Values and gradients as without it; the while loops that keep a residual stream from
    being fused into every later block survive XLA's simplification."""

    def stream(x, kernels, cut):
        for kernel in kernels:
            x = jax.nn.relu(jnp.tanh(x @ kernel) + x)
            x = cpu_kernels.materialize(x) if cut else x
        return jnp.sum(x**2)

    kx, kk = jax.random.split(jax.random.key(4))
    x = jax.random.normal(kx, (2, 6, 8))
    kernels = list(jax.random.normal(kk, (4, 8, 8)) / 3)
    plain = jax.jit(jax.value_and_grad(functools.partial(stream, cut=False)))
    cut = jax.jit(jax.value_and_grad(functools.partial(stream, cut=True)))
    (value, grad), (value_cut, grad_cut) = plain(x, kernels), cut(x, kernels)
    np.testing.assert_array_equal(value_cut, value)
    np.testing.assert_allclose(grad_cut, grad, rtol=1e-6, atol=1e-6)
    compiled = cut.lower(x, kernels).compile().as_text()
    assert compiled.count(" while(") == 8  # Forward and backward, per block.
    nan = x.at[0, 0, 0].set(jnp.nan)  # The loop runs no trip then; still the identity.
    np.testing.assert_array_equal(jax.jit(cpu_kernels.materialize)(nan), nan)


@pytest.mark.parametrize("kernels", ["cpu", "xla"])  # "cpu": phases where k > s.
@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "output_padding"),
    # FCN's and U-Net's, a phase per axis with 2 taps, and one with 1-2 taps whose last
    # phase's first tap reads before the input (negative padding).
    [(3, 2, 1, 1), (2, 2, 0, 0), (4, 2, 1, 0), (3, 3, 0, 0), (5, 4, 2, 3)],
)
def test_conv_transpose2d_matches_torch(kernel_size, stride, padding, output_padding, kernels):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 7)).astype(np.float32)
    tconv = torch.nn.ConvTranspose2d(6, 4, kernel_size, stride, padding, output_padding)
    conv = layers.ConvTranspose2d(4, kernel_size, stride, padding, output_padding, kernels=kernels)
    assert_conv_matches(tconv, conv, x)


@pytest.mark.parametrize("kernels", ["cpu", "xla"])  # "cpu": strided_conv2d's gradients.
@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding"),
    # FCN's encoder, ResNet's stem, patches, a phase per axis with 2 taps, and stride 3.
    [(3, 2, 1), (7, 2, 3), (2, 2, 0), (4, 2, 1), (5, 3, 1)],
)
def test_strided_conv2d_matches_torch(kernel_size, stride, padding, kernels):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 7, 12, 6)).astype(np.float32)  # NCHW.
    tconv = torch.nn.Conv2d(7, 4, kernel_size, stride, padding)
    conv = layers.Conv2d(4, kernel_size, stride, padding, kernels=kernels)
    assert layers.strided_by_phases(
        x.shape[2:], (kernel_size,) * 2, (stride,) * 2, ((padding,) * 2,) * 2, (1, 1)
    )
    assert_conv_matches(tconv, conv, x)


def test_strided_by_phases_only_where_the_output_is_exactly_a_stride_th():
    """Else XLA's own gradients: ResNet's 1x1 stride-2 shortcut (no tap for three phases),
    odd sizes, unequal strides or padding, dilation, stride 1."""
    same = ((1, 1), (1, 1))
    assert layers.strided_by_phases((8, 8), (3, 3), (2, 2), same, (1, 1))
    assert not layers.strided_by_phases((8, 8), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1))
    assert not layers.strided_by_phases((9, 8), (3, 3), (2, 2), same, (1, 1))
    assert not layers.strided_by_phases((8, 8), (3, 3), (2, 1), same, (1, 1))
    assert not layers.strided_by_phases((8, 8), (3, 3), (2, 2), ((1, 0), (1, 0)), (1, 1))
    assert not layers.strided_by_phases((8, 8), (3, 3), (2, 2), same, (2, 2))
    assert not layers.strided_by_phases((8, 8), (3, 3), (1, 1), same, (1, 1))
    assert not layers.strided_by_phases((8, 8), (3, 3), (2, 2), ((2, 2), (2, 2)), (1, 1))

    def jaxpr(kernels: str, shape) -> str:
        loss = lambda k: layers.conv2d(  # noqa: E731
            jnp.zeros(shape), k, stride=(2, 2), padding=same, kernels=kernels
        ).sum()
        return str(jax.make_jaxpr(jax.grad(loss))(jnp.zeros((3, 3, 4, 5))))

    assert "custom_vjp" in jaxpr("cpu", (1, 8, 8, 4))
    assert "custom_vjp" not in jaxpr("cpu", (1, 9, 8, 4))
    assert "custom_vjp" not in jaxpr("xla", (1, 8, 8, 4))


def _loss(conv):
    return lambda x, k: jnp.sum(conv(x, k).astype(jnp.float32) ** 2)


# The per-layer choice inside "cpu", at the real thresholds.


def _weight_grad_jaxpr(kernels: str, x_shape, kernel_shape) -> str:
    x, kernel = jnp.zeros(x_shape), jnp.zeros(kernel_shape)
    k = kernel_shape[0] // 2
    loss = lambda k_: layers.conv2d(x, k_, padding=((k, k), (k, k)), kernels=kernels).sum()  # noqa: E731
    return str(jax.make_jaxpr(jax.grad(loss))(kernel))


def test_cpu_keeps_xla_weight_gradients_of_undilated_convolutions():
    """Outside strips XLA's own weight gradient: it beat an im2col matmul at every size
    measured; strips did not pay below 64 channels nor at 64 channels at full resolution."""
    for x_shape, kernel_shape in [
        ((2, 256, 512, 64), (3, 3, 64, 64)),
        ((2, 64, 128, 32), (3, 3, 32, 64)),
        ((1, 8, 8, 4), (1, 1, 4, 4)),
    ]:
        cpu = _weight_grad_jaxpr("cpu", x_shape, kernel_shape)
        assert cpu == _weight_grad_jaxpr("xla", x_shape, kernel_shape)
        assert "custom_vjp" not in cpu


@pytest.mark.parametrize(("kernel_size", "padding", "convolutions"), [(3, 1, 3), (2, 0, 0)])
def test_cpu_uses_phases_where_taps_overlap(kernel_size, padding, convolutions):
    """k3 s2: four phases, the 1x1 one a matmul; k2 s2: the sub-pixel matmul either way."""

    def jaxpr(kernels: str) -> str:
        conv = layers.ConvTranspose2d(
            4, kernel_size, 2, padding, output_padding=kernel_size % 2, kernels=kernels
        )
        init = lambda x: conv.init_with_output(jax.random.key(0), x)  # noqa: E731
        return str(jax.make_jaxpr(init)(jnp.zeros((1, 2, 2, 8))))

    assert jaxpr("cpu").count("conv_general_dilated") == convolutions
    assert jaxpr("xla").count("conv_general_dilated") == (1 if convolutions else 0)


@pytest.mark.parametrize(
    ("kernel_shape", "stride"), [((1, 1, 6, 5), 1), ((3, 3, 6, 5), 1), ((3, 3, 6, 5), 2)]
)
def test_cpu_conv_gradient_exports_with_a_symbolic_batch(kernel_shape, stride):
    """The per-layer choice needs no concrete batch size."""
    k = kernel_shape[0] // 2

    def grads(x, kernel):
        conv = lambda x_, k_: layers.conv2d(  # noqa: E731
            x_, k_, stride=(stride, stride), padding=((k, k), (k, k)), kernels="cpu"
        )
        return jax.grad(_loss(conv), argnums=(0, 1))(x, kernel)

    x_spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 10, 12, 6"), jnp.float32)
    k_spec = jax.ShapeDtypeStruct(kernel_shape, jnp.float32)
    exported = jax.export.export(jax.jit(grads), platforms=("cpu",))(x_spec, k_spec)
    kx, kk = jax.random.split(jax.random.key(2))
    x = jax.random.normal(kx, (3, 10, 12, 6))
    kernel = jax.random.normal(kk, kernel_shape)
    for got, want in zip(exported.call(x, kernel), jax.jit(grads)(x, kernel), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# Whole models: "cpu" and "xla" compute the same function, and both export.

# Tiny models whose "cpu" kernels differ from "xla"'s: their decoders' k3 s2 transposed
# convolutions run as phases, FCN's encoder as strided_conv2d, U-Net's wide layers'
# weight gradients in strips.
MODELS = {
    "fcn": ({"widths": (4, 8, 8, 8, 16)}, (2, 32, 64, 3)),
    "custom": ({"depth": 2}, (2, 32, 36, 3)),
    "unet": ({"base_width": 32}, (2, 32, 32, 3)),  # Strips from 64 channels.
}


def _train_step(model):
    """Logits and parameter gradients of a train-mode forward pass."""

    def step(variables, x, weights):
        def loss(params):
            logits, _ = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.sum(logits * weights), logits

        grads, logits = jax.grad(loss, has_aux=True)(variables["params"])
        return logits, grads

    return step


def _eval_jaxpr(model, variables, x) -> str:
    return str(jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables))


@pytest.fixture(scope="module", params=list(MODELS))
def xla_model(request):
    """(name, inputs, eval jaxpr, logits and gradients) of the "xla" model, once per module."""
    name = request.param
    options, shape = MODELS[name]
    model = models.get_model(name, num_classes=5, kernels="xla", **options)
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, shape)
    weights = jax.random.normal(kw, (*shape[:3], 5))
    variables = model.init(jax.random.key(1), x, train=False)
    outputs = jax.jit(_train_step(model))(variables, x, weights)
    return name, (variables, x, weights), _eval_jaxpr(model, variables, x), outputs


def test_cpu_and_xla_models_compute_the_same(xla_model):
    name, (variables, x, weights), jaxpr_xla, (logits_xla, grads_xla) = xla_model
    cpu = models.get_model(name, num_classes=5, kernels="cpu", **MODELS[name][0])

    # The "cpu" model really runs other kernels.
    assert _eval_jaxpr(cpu, variables, x) != jaxpr_xla

    logits_cpu, grads_cpu = jax.jit(_train_step(cpu))(variables, x, weights)
    scale = max(1.0, float(jnp.abs(logits_xla).max()))
    np.testing.assert_allclose(logits_cpu, logits_xla, atol=1e-5 * scale)
    flat_xla = jax.tree_util.tree_leaves_with_path(grads_xla)
    flat_cpu = jax.tree.leaves(grads_cpu)
    scale = max(1.0, max(float(jnp.abs(g).max()) for _, g in flat_xla))
    for (path, want), got in zip(flat_xla, flat_cpu, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4 * scale, err_msg=jax.tree_util.keystr(path))


EXPORT_MODELS = {"fcn": {"widths": (4, 8, 8, 8, 128)}, "unet": {"base_width": 4}}


@pytest.mark.parametrize(("kernels", "platforms"), [("xla", ("cpu", "cuda")), ("cpu", ("cpu",))])
@pytest.mark.parametrize("name", list(EXPORT_MODELS))
def test_eval_model_exports_with_a_symbolic_batch(name, kernels, platforms):
    model = models.get_model(name, num_classes=5, kernels=kernels, **EXPORT_MODELS[name])
    x = jax.random.normal(jax.random.key(0), (3, 64, 128, 3))
    variables = model.init(jax.random.key(1), x[:1], train=False)

    def apply(v, x_):
        return model.apply(v, x_, train=False)

    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    x_spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 64, 128, 3"), jnp.float32)
    exported = jax.export.export(jax.jit(apply), platforms=platforms)(specs, x_spec)
    assert exported.platforms == platforms
    np.testing.assert_allclose(
        exported.call(variables, x), jax.jit(apply)(variables, x), rtol=1e-5, atol=1e-5
    )
