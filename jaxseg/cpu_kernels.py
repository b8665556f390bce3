"""Convolution formulations that beat XLA's on the CPU backend.

A model built with ``kernels="cpu"`` uses them where they were measured to win; with
``kernels="xla"`` it uses the plain formulations of ``jaxseg.models.layers``. Both compute the
same function. Callers pick once, when they build the model, with :func:`resolve`.

Stride-1 convolutions keep XLA's own kernels: with convolutions off YNNPACK
(``jaxseg.xla_cpu``), XLA's Eigen kernels were faster than an im2col weight gradient at every
layer measured (benchmarks/NOTES.md, section 12). From 64 input channels (on maps not too
large) :func:`conv2d_in_strips` only hands XLA's weight gradient a larger batch. Transposed
convolutions are convolutions too (``jaxseg.models.layers.conv_transpose_phases``).
:func:`conv2d_tap_matmuls` is a dilated convolution as one matmul per kernel row over the
positions where its taps read the input (DeepLabV3's ASPP, whose large rates read mostly
padding). :func:`strided_weight_grad` is the kernel gradient of strided (and transposed)
convolutions as a patch matmul. :func:`materialize` keeps XLA's loop fusion from recomputing
a ResNet's residual stream in every later block.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

KERNELS = ("auto", "cpu", "xla")

Padding = tuple[tuple[int, int], tuple[int, int]]

# "cpu" computes a dilated stride-1 convolution as one matmul per kernel tap from this many
# input channels. Measured at batch 2, forward (fwd + weight gradient), XLA's dilated conv
# against the tap matmuls: 2048 -> 256 at 32x64, rate 12: 351 -> 219 ms (738 -> 287), rate
# 24: 437 -> 120 (1002 -> 156); at 64x128, rate 12: 1610 -> 1081 (2204 -> 1430), rate 6:
# 1455 -> 1161. With 256-512 channels (ResNet's dilated 3x3s) XLA's forward was as fast or
# faster: 256 -> 256 rate 2 at 32x64 38 against 52 ms, 512 -> 512 rate 4 122 against 141.
TAP_MATMULS_MIN_CHANNELS = 1024

# "cpu" computes the kernel gradient of a stride-1 convolution over the batch cut into this
# many strips of rows (:func:`conv2d_in_strips`) from this many input channels, where one
# image's input has at most this many elements (above it, copying the strips costs more than
# they gain). Kernel gradient alone, batch 2, XLA's against 4 strips: 2x128x256 128 -> 128 190
# -> 137 ms, 2x64x128 256 -> 256 143 -> 118, 2x32x64 512 -> 512 125 -> 100; 2x256x512 64 ->
# 64 207 -> 214 and 128 -> 64 364 -> 389 (benchmarks/NOTES.md, section 14). RRCNN's
# recurrent block (3 uses of one convolution, BatchNorm, ReLU; forward and backward) at
# 2x128x256 64 -> 64 380 -> 319 ms; at 2x256x512 32 -> 32 419 -> 450 (section 15).
STRIPS = 4
STRIPS_MIN_CHANNELS = 64
STRIPS_MAX_ELEMENTS = 2**22


def resolve(kernels: str) -> str:
    """The kernels a model is built with: "auto" becomes "cpu" on the CPU backend, else "xla".

    Call it when building the model, outside any traced function: the backend is a property
    of the process, not of the computation.

    Args:
      kernels: "auto", "cpu" or "xla".

    Returns:
      "cpu" or "xla".

    Raises:
      ValueError: if ``kernels`` is not one of ``KERNELS``.
    """
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; valid: {', '.join(KERNELS)}")
    if kernels == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "xla"
    return kernels


def use_tap_matmuls(kernel_shape: Sequence[int], dilation: tuple[int, int]) -> bool:
    """Whether "cpu" computes a stride-1 convolution by :func:`conv2d_tap_matmuls`."""
    return max(dilation) > 1 and kernel_shape[2] >= TAP_MATMULS_MIN_CHANNELS


def use_strips(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
) -> bool:
    """Whether "cpu" computes a convolution by :func:`conv2d_in_strips`: stride 1, no
    dilation, from ``STRIPS_MIN_CHANNELS`` input channels and up to ``STRIPS_MAX_ELEMENTS``
    per image, output rows a multiple of ``STRIPS``."""
    _, h, w, ci = x_shape
    (top, bottom), _ = padding
    out_h = h + top + bottom - kernel_shape[0] + 1
    return (
        stride == (1, 1)
        and dilation == (1, 1)
        and STRIPS_MIN_CHANNELS <= ci
        and h * w * ci <= STRIPS_MAX_ELEMENTS
        and out_h > 0
        and out_h % STRIPS == 0
    )


def _conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d_in_strips(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """A stride-1 convolution whose kernel gradient runs over the batch cut into strips.

    XLA's CPU backend computes a kernel gradient as a convolution with batch and channels
    swapped, the batch as its innermost, contracted dimension: with batch 2 that packs two
    numbers at a time. Cutting each image into ``STRIPS`` strips of output rows (each input
    strip with the rows its taps read above and below) makes the batch ``STRIPS`` times
    larger for the same sum; the output gradient is only reshaped, the input copied once.
    The forward pass and the input gradient are XLA's.

    Args:
      x: [B, H, W, Ci] input.
      kernel: [kh, kw, Ci, Co] HWIO kernel.
      padding: ((top, bottom), (left, right)) zero padding; the output's height a multiple
        of ``STRIPS``.

    Returns:
      [B, Ho, Wo, Co].
    """
    return _conv(x, kernel, padding)


def _conv2d_in_strips_fwd(x, kernel, padding):
    return _conv(x, kernel, padding), (x, kernel)


def _conv2d_in_strips_bwd(padding, residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x_: _conv(x_, kernel, padding), x)[1](dy)[0]
    b, _, w, ci = x.shape
    kh = kernel.shape[0]
    _, out_h, out_w, co = dy.shape
    rows = out_h // STRIPS
    (top, bottom), columns = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (0, 0), (0, 0)))
    strips = jnp.stack(
        [padded[:, j * rows : j * rows + rows + kh - 1] for j in range(STRIPS)], axis=1
    ).reshape(b * STRIPS, rows + kh - 1, w, ci)
    dy_strips = dy.reshape(b * STRIPS, rows, out_w, co)
    strip_padding = ((0, 0), columns)
    dk = jax.vjp(lambda k_: _conv(strips, k_, strip_padding), kernel)[1](dy_strips)[0]
    return dx, dk


conv2d_in_strips.defvjp(_conv2d_in_strips_fwd, _conv2d_in_strips_bwd)


def _tap_window(tap: int, dilation: int, pad_lo: int, size: int, out: int) -> tuple[int, int, int]:
    """(first, end) output positions where a tap reads the input, and its input offset."""
    offset = tap * dilation - pad_lo
    return max(0, -offset), min(out, size - offset), offset


def conv2d_tap_matmuls(
    x: jax.Array, kernel: jax.Array, padding: Padding, dilation: tuple[int, int]
) -> jax.Array:
    """Stride-1 cross-correlation as one matmul per kernel row, over only the positions
    where its taps read the input.

    Output position i of tap j reads input i + j * dilation - pad; on a map not much larger
    than the dilation (DeepLabV3's ASPP, rates 12-36 on a 32x64 map) most of a tap's reads
    fall into the padding, which a convolution multiplies anyway. Here each kernel row
    multiplies the input rows it reads (a contiguous slice per image; none for a row that
    reads them all) by its taps' kernels side by side, [Ci, taps * Co]; each tap then adds
    the columns of its product that land on the output, in float32. Taps that read only
    padding are left out. The gradients are matmuls and slices too.

    Args:
      x: [B, H, W, Ci] input.
      kernel: [kh, kw, Ci, Co] HWIO kernel.
      padding: ((top, bottom), (left, right)) zero padding.
      dilation: (dh, dw).

    Returns:
      [B, Ho, Wo, Co] in ``x``'s dtype, Ho = H + top + bottom - dh * (kh - 1) (W likewise).
    """
    b, h, w, ci = x.shape
    kh, kw, _, co = kernel.shape
    (top, bottom), (left, right) = padding
    out_h = h + top + bottom - dilation[0] * (kh - 1)
    out_w = w + left + right - dilation[1] * (kw - 1)
    columns = [(kx, *_tap_window(kx, dilation[1], left, w, out_w)) for kx in range(kw)]
    columns = [(kx, x0, x1, dx) for kx, x0, x1, dx in columns if x0 < x1]
    total = jnp.zeros((b, out_h, out_w, co), jnp.float32)
    for ky in range(kh):
        y0, y1, dy = _tap_window(ky, dilation[0], top, h, out_h)
        if y0 >= y1 or not columns:
            continue  # The kernel row reads only padding.
        taps = jnp.concatenate([kernel[ky, kx] for kx, *_ in columns], axis=-1)
        rows = x[:, y0 + dy : y1 + dy].reshape(-1, ci)
        product = jnp.dot(rows, taps, preferred_element_type=jnp.float32)
        product = product.reshape(b, y1 - y0, w, len(columns), co)
        for i, (_, x0, x1, dx) in enumerate(columns):
            part = product[:, :, x0 + dx : x1 + dx, i]
            total += jnp.pad(part, ((0, 0), (y0, out_h - y1), (x0, out_w - x1), (0, 0)))
    return total.astype(x.dtype)


def strided_weight_grad(
    x: jax.Array, dy: jax.Array, kernel_size: int, stride: int, padding: int
) -> jax.Array:
    """Kernel gradient of a strided convolution, as one matmul of the output gradient with the
    input's patches.

    XLA's CPU backend runs this gradient as a convolution with a dilated kernel, at 1.5-2.2x
    the time of the patch matmul for FCN's stride-2 layers (benchmarks/NOTES.md, section 14).
    The patches are ``kernel_size**2`` strided slices of the padded input side by side, the
    size of the output times ``kernel_size**2 * Ci``.

    Args:
      x: [B, H, W, Ci] input of ``conv2d(x, kernel, stride=(s, s), padding=((p, p), (p, p)))``.
      dy: [B, Ho, Wo, Co] gradient of its output.
      kernel_size: k (square kernels).
      stride: s.
      padding: p, on every side.

    Returns:
      [k, k, Ci, Co] gradient of the HWIO kernel.
    """
    k, s, p = kernel_size, stride, padding
    _, out_h, out_w, co = dy.shape
    ci = x.shape[-1]
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    patches = jnp.concatenate(
        [
            padded[:, ky : ky + s * (out_h - 1) + 1 : s, kx : kx + s * (out_w - 1) + 1 : s]
            for ky in range(k)
            for kx in range(k)
        ],
        axis=-1,
    ).reshape(-1, k * k * ci)
    # [Co, k*k*Ci], then transposed: faster than the [k*k*Ci, Co] product (section 7).
    grad = dy.reshape(-1, co).T @ patches
    return grad.T.reshape(k, k, ci, co)


def _through_a_loop(x: jax.Array) -> jax.Array:
    """``x``, returned by a while loop that XLA cannot remove: it runs once (none if
    ``x``'s first element is NaN) and adds zero to one element."""
    first = x.reshape(-1)[0]
    trips = (first == first).astype(jnp.int32)  # Data-dependent: XLA cannot count it.

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        i, y = carry
        corner = (0,) * y.ndim
        return i + 1, y.at[corner].add((0 * i).astype(y.dtype))

    return jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), x))[1]


@jax.custom_vjp
def materialize(x: jax.Array) -> jax.Array:
    """``x`` (and, in the backward pass, its cotangent), computed once into memory.

    XLA's CPU loop fusion duplicates cheap elementwise producers into every consumer. Along
    a ResNet's residual stream (each block's ``relu(y + x)`` feeds the next block's
    convolution and its residual add) that compounds: each block's input was recomputed
    from every earlier block's output, 115-operand fusions in DeepLabV3-R101's layer3, 4 s
    of a 21 s train step at 512x1024. A while loop is one of the few things that fusion
    cannot cross (optimisation barriers are dropped before it on the CPU backend).
    """
    return _through_a_loop(x)


def _materialize_fwd(x: jax.Array) -> tuple[jax.Array, None]:
    return _through_a_loop(x), None


def _materialize_bwd(_: None, g: jax.Array) -> tuple[jax.Array]:
    return (_through_a_loop(g),)


materialize.defvjp(_materialize_fwd, _materialize_bwd)
