"""Convolution formulations that beat XLA's on the CPU backend.

A model built with ``kernels="cpu"`` uses them where they were measured to win; with
``kernels="xla"`` it uses the plain formulations of ``jaxseg.models.layers``. Both compute the
same function. Callers pick once, when they build the model, with :func:`resolve`.

On CPU, XLA's weight gradient of a stride-1 convolution has performance cliffs at high
resolution (2x128x256x128->128 3x3: 0.94 s where the same FLOPs at 2x16x32x1024->1024 take
0.49 s, one thread). :func:`conv2d_fast_weight_grad` is that convolution with a
``jax.custom_vjp`` whose weight gradient is a chunked im2col matmul (:func:`conv_weight_grad`;
1.2-2.3x faster from ~5 GFLOP up, 10-25% slower on small layers, where its im2col copy
dominates). :func:`conv_transpose_col2im` is a transposed convolution as one matmul plus
shifted adds, faster than the sub-pixel convolution where channels are many.
:func:`conv2d_tap_matmuls` is a dilated convolution as one matmul per kernel row over the
positions where its taps read the input (DeepLabV3's ASPP, whose large rates read mostly
padding). :func:`materialize` keeps XLA's loop fusion from recomputing a
ResNet's residual stream in every later block.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxseg.subpixel import subpixel_taps

KERNELS = ("auto", "cpu", "xla")

Padding = tuple[tuple[int, int], tuple[int, int]]

# Weight-gradient FLOPs per image, 2 * Ho * Wo * kh * kw * Ci * Co, from which "cpu" uses the
# im2col weight gradient. Measured with batch 2 on a 2-core AMD EPYC, one thread (FLOPs of
# the whole batch): 4.8 GFLOP layers are ~break-even (0.77-1.34x), 9.7 GFLOP and up gain
# 1.2-2.3x, 0.9-1.2 GFLOP layers lose 4-23%; the threshold chosen then, 4 GFLOP at batch 2,
# is 2 GFLOP per image. Per image, the choice needs no concrete batch size, so a model
# exported with a symbolic batch makes it too.
FAST_WEIGHT_GRAD_MIN_FLOPS = 2e9

# "cpu" uses col2im for transposed convolutions from this many input channels. Measured (one
# thread, fwd+bwd, k3 s2): Ci 512 at 8x16 3.1x faster than sub-pixel, Ci 256 1.3x, Ci 128
# 1.0x, Ci 64 at 128x256 0.8x; k2 s2 with Ci 128 and 1024: 1.4-1.5x.
COL2IM_MIN_CHANNELS = 128

# "cpu" computes a dilated stride-1 convolution as one matmul per kernel tap from this many
# input channels. Measured at batch 2, forward (fwd + weight gradient), XLA's dilated conv
# against the tap matmuls: 2048 -> 256 at 32x64, rate 12: 351 -> 219 ms (738 -> 287), rate
# 24: 437 -> 120 (1002 -> 156); at 64x128, rate 12: 1610 -> 1081 (2204 -> 1430), rate 6:
# 1455 -> 1161. With 256-512 channels (ResNet's dilated 3x3s) XLA's forward was as fast or
# faster: 256 -> 256 rate 2 at 32x64 38 against 52 ms, 512 -> 512 rate 4 122 against 141.
TAP_MATMULS_MIN_CHANNELS = 1024

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


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


def use_fast_weight_grad(kernel_shape: Sequence[int], out_positions: int) -> bool:
    """Whether "cpu" gives a stride-1 convolution the im2col weight gradient.

    Args:
      kernel_shape: (kh, kw, Ci, Co).
      out_positions: Ho * Wo of one image.

    Returns:
      True for 1x1 kernels and for weight gradients of at least
      ``FAST_WEIGHT_GRAD_MIN_FLOPS`` per image.
    """
    kh, kw, ci, co = kernel_shape
    return kh * kw == 1 or 2 * out_positions * kh * kw * ci * co >= FAST_WEIGHT_GRAD_MIN_FLOPS


def use_tap_matmuls(kernel_shape: Sequence[int], dilation: tuple[int, int]) -> bool:
    """Whether "cpu" computes a stride-1 convolution by :func:`conv2d_tap_matmuls`."""
    return max(dilation) > 1 and kernel_shape[2] >= TAP_MATMULS_MIN_CHANNELS


def use_col2im(in_channels: int) -> bool:
    """Whether "cpu" computes a transposed convolution by :func:`conv_transpose_col2im`."""
    return in_channels >= COL2IM_MIN_CHANNELS


def _conv(
    x: jax.Array, kernel: jax.Array, padding: Padding, dilation: tuple[int, int]
) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, rhs_dilation=dilation, dimension_numbers=_DIMENSION_NUMBERS
    )


def conv_weight_grad(
    x: jax.Array,
    g: jax.Array,
    kernel_hw: tuple[int, int],
    dilation: tuple[int, int],
    chunk_positions: int = 1024,
) -> jax.Array:
    """Weight gradient of a stride-1 VALID convolution as chunked im2col matmuls.

    Rows of the (already padded) input are flattened with their full padded width, so the
    input patch of tap (ky, kx) is the flat input shifted by ``ky * dh * Wp + kx * dw``. The
    output gradient is padded with zero columns to width ``Wp``; those zeros cancel the
    positions where a shifted row wraps into the next one, so no gather is needed. The output
    rows are processed in chunks of about ``chunk_positions`` positions per image: the
    [B*P, kh*kw*Ci] patch matrix of a chunk stays in cache, which measured ~2x faster than one
    matmul over the fully materialised im2col matrix (and 9 per-tap matmuls) at
    2x256x512x64->64 with 2 x 1024 positions per chunk. Chunks are sized per image so that
    the batch size may be symbolic.

    Args:
      x: [B, Hp, Wp, Ci] the padded convolution input.
      g: [B, Ho, Wo, Co] gradient of the output, Ho = Hp - dh*(kh-1), Wo = Wp - dw*(kw-1).
      kernel_hw: (kh, kw).
      dilation: (dh, dw).
      chunk_positions: output positions per image per matmul.

    Returns:
      [kh, kw, Ci, Co] float32 gradient of the HWIO kernel.
    """
    (kh, kw), (dh, dw) = kernel_hw, dilation
    b, _, wp, ci = x.shape
    _, ho, wo, co = g.shape
    rows = min(ho, -(-chunk_positions // wp))  # Output rows per chunk.
    chunks = -(-ho // rows)
    # The extra input row lets the last tap's flat slice run past the last row's end.
    extra = 1 if kw > 1 else 0
    span = rows + dh * (kh - 1) + extra  # Input rows read by one chunk.
    # Zero gradient rows/columns contribute nothing, so padding keeps every chunk equal.
    g = jnp.pad(g, ((0, 0), (0, chunks * rows - ho), (0, wp - wo), (0, 0)))
    x = jnp.pad(x, ((0, 0), (0, chunks * rows - ho + extra), (0, 0), (0, 0)))
    offsets = [ky * dh * wp + kx * dw for ky in range(kh) for kx in range(kw)]
    length = rows * wp

    def chunk(acc: jax.Array, i: jax.Array) -> tuple[jax.Array, None]:
        gi = jax.lax.dynamic_slice_in_dim(g, i * rows, rows, 1).reshape(b * length, co)
        xi = jax.lax.dynamic_slice_in_dim(x, i * rows, span, 1).reshape(b, span * wp, ci)
        cols = jnp.concatenate([xi[:, o : o + length] for o in offsets], axis=-1)
        dk_t = jax.lax.dot_general(
            gi,
            cols.reshape(b * length, kh * kw * ci),
            (((0,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
        return acc + dk_t, None

    # The transposed gradient [Co, kh*kw*Ci] is the faster product: 0.81-0.91x the time of
    # [kh*kw*Ci, Co] for U-Net's layers with Co <= 128, even from Co = 512 (benchmarks/NOTES.md).
    acc = jnp.zeros((co, kh * kw * ci), jnp.float32)
    if chunks == 1:
        dk_t, _ = chunk(acc, jnp.int32(0))
    else:
        dk_t, _ = jax.lax.scan(chunk, acc, jnp.arange(chunks))
    return dk_t.T.reshape(kh, kw, ci, co)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast_wgrad(
    x: jax.Array, kernel: jax.Array, padding: Padding, dilation: tuple[int, int]
) -> jax.Array:
    return _conv(x, kernel, padding, dilation)


def _fast_fwd(x, kernel, padding, dilation):
    return _conv(x, kernel, padding, dilation), (x, kernel)


def _fast_bwd(padding, dilation, residuals, g):
    x, kernel = residuals
    # XLA's input gradient is as fast as PyTorch's; only the weight gradient is replaced.
    _, vjp_x = jax.vjp(lambda x_: _conv(x_, kernel, padding, dilation), x)
    (dx,) = vjp_x(g)
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    dk = conv_weight_grad(x, g, kernel.shape[:2], dilation)
    return dx, dk.astype(kernel.dtype)


_conv_fast_wgrad.defvjp(_fast_fwd, _fast_bwd)


def conv2d_fast_weight_grad(
    x: jax.Array,
    kernel: jax.Array,
    padding: Sequence[tuple[int, int]],
    dilation: tuple[int, int] = (1, 1),
) -> jax.Array:
    """Stride-1 cross-correlation whose weight gradient is :func:`conv_weight_grad`.

    The value and the input gradient are XLA's convolution and its gradient.

    Args:
      x: [B, H, W, Ci] input.
      kernel: [kh, kw, Ci, Co] HWIO kernel, same dtype as ``x``.
      padding: ((top, bottom), (left, right)) zero padding.
      dilation: (dh, dw) kernel dilation.

    Returns:
      [B, H + top + bottom - dh*(kh-1), W + left + right - dw*(kw-1), Co].
    """
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)  # Hashable for custom_vjp.
    return _conv_fast_wgrad(x, kernel, padding, (int(dilation[0]), int(dilation[1])))


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


def conv_transpose_col2im(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """``ConvTranspose2d`` (output exactly ``stride`` x input) as one matmul plus shifted adds.

    Every input pixel is multiplied by all k*k taps at once ([B*H*W, Ci] @ [Ci, k*k*Co]);
    output phase (a, b) then sums the taps that land on it (1, 2, 2 and 4 of them for
    k3 s2 p1), shifted as in :func:`jaxseg.subpixel.subpixel_taps`. This does k*k tap
    products per pixel where the sub-pixel convolution does J*J*s*s (16 vs 9 for k3 s2), and
    every gradient is a plain matmul, so on CPU it wins where channels are many and pixels
    few.

    Args:
      x: [B, H, W, Ci].
      kernel: [k, k, Ci, Co] (torch's (Ci, Co, k, k) transposed (2, 3, 0, 1)).
      stride: s.
      padding: torch's padding p, with k + output_padding - 2p == s.

    Returns:
      [B, s*H, s*W, Co].
    """
    k, _, ci, co = kernel.shape
    b, h, w, _ = x.shape
    index, pad_lo, pad_hi = subpixel_taps(k, stride, padding)
    taps = jnp.dot(x.reshape(-1, ci), kernel.transpose(2, 0, 1, 3).reshape(ci, k * k * co))
    taps = taps.reshape(b, h, w, k, k, co)
    taps = jnp.pad(taps, ((0, 0), (pad_lo, pad_hi), (pad_lo, pad_hi), (0, 0), (0, 0), (0, 0)))
    phases = []
    for a in range(stride):
        for c in range(stride):
            terms = [
                taps[:, jy : jy + h, jx : jx + w, ky, kx]
                for jy, ky in enumerate(index[:, a])
                for jx, kx in enumerate(index[:, c])
                if ky < k and kx < k
            ]
            phases.append(functools.reduce(jnp.add, terms))
    y = jnp.stack(phases, axis=3).reshape(b, h, w, stride, stride, co)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * stride, w * stride, co)
