"""Layers shared by every model family, with PyTorch semantics.

Convolutions take NHWC activations and store their kernels so that a PyTorch weight maps
onto them by a transpose: ``Conv2d.kernel`` is HWIO (torch OIHW ``.transpose(2, 3, 1, 0)``),
``ConvTranspose2d.kernel`` is (kh, kw, in, out) (torch (in, out, kh, kw)
``.transpose(2, 3, 0, 1)``).

On CPU, XLA's weight gradient of a stride-1 convolution has performance cliffs at high
resolution (2x128x256x128->128 3x3: 0.94 s where the same FLOPs at 2x16x32x1024->1024
take 0.49 s, one thread). Stride-1 convolutions here therefore carry a ``jax.custom_vjp``
whose weight gradient is a chunked im2col matmul (1.2-2.3x faster from ~5 GFLOP up, 10-25%
slower on small layers, where its im2col copy dominates). "Auto" uses it on the CPU backend
for 1x1 kernels and for weight gradients of at least ``FAST_WEIGHT_GRAD_MIN_FLOPS``; a layer
field (``fast_weight_grad``) or :func:`set_fast_weight_grad` forces it on or off. On GPU,
auto is the plain ``lax.conv_general_dilated``. Unpadded stride-1 1x1 convolutions are
matmuls over channels on every backend.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Initializer = Any
Padding = tuple[tuple[int, int], tuple[int, int]]

# PyTorch's default conv weight init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), +...).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

# ConvTranspose2d auto: col2im from this many input channels on CPU. Measured (one thread,
# fwd+bwd, k3 s2): Ci 512 at 8x16 3.1x faster than subpixel, Ci 256 1.3x, Ci 128 1.0x,
# Ci 64 at 128x256 0.8x; k2 s2 with Ci 128 and 1024: 1.4-1.5x.
COL2IM_MIN_CHANNELS = 128
_fast_weight_grad_default: bool | None = None


# Auto threshold: 2 * B * Ho * Wo * kh * kw * Ci * Co of the weight gradient. Measured on a
# 2-core AMD EPYC, one thread: 4.8 GFLOP layers are ~break-even (0.77-1.34x), 9.7 GFLOP and
# up gain 1.2-2.3x, 0.9-1.2 GFLOP layers lose 4-23%.
FAST_WEIGHT_GRAD_MIN_FLOPS = 4e9


def set_fast_weight_grad(enabled: bool | None) -> None:
    """Sets the global default of the CPU fast conv weight gradient.

    The choice is read when a function is traced, so set it before ``jax.jit`` compiles.

    Args:
      enabled: True or False forces the fast path on or off (stride-1 convolutions) for
        every layer whose ``fast_weight_grad`` field is None; None restores auto (see the
        module docstring).
    """
    global _fast_weight_grad_default
    _fast_weight_grad_default = enabled


def _use_fast_weight_grad(
    flag: bool | None, x_shape: Sequence[int], kernel_shape: Sequence[int], out_hw: int
) -> bool:
    if flag is not None:
        return flag
    if _fast_weight_grad_default is not None:
        return _fast_weight_grad_default
    kh, kw, ci, co = kernel_shape
    flops = 2 * x_shape[0] * out_hw * kh * kw * ci * co
    return jax.default_backend() == "cpu" and (kh * kw == 1 or flops >= FAST_WEIGHT_GRAD_MIN_FLOPS)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


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
    chunk_positions: int = 2048,
) -> jax.Array:
    """Weight gradient of a stride-1 VALID convolution as chunked im2col matmuls.

    Rows of the (already padded) input are flattened with their full padded width, so the
    input patch of tap (ky, kx) is the flat input shifted by ``ky * dh * Wp + kx * dw``. The
    output gradient is padded with zero columns to width ``Wp``; those zeros cancel the
    positions where a shifted row wraps into the next one, so no gather is needed. The output
    rows are processed in chunks of about ``chunk_positions`` positions: the [P, kh*kw*Ci]
    patch matrix of a chunk stays in cache, which measured ~2x faster than one matmul over
    the fully materialised im2col matrix (and 9 per-tap matmuls) at 2x256x512x64->64.

    Args:
      x: [B, Hp, Wp, Ci] the padded convolution input.
      g: [B, Ho, Wo, Co] gradient of the output, Ho = Hp - dh*(kh-1), Wo = Wp - dw*(kw-1).
      kernel_hw: (kh, kw).
      dilation: (dh, dw).
      chunk_positions: output positions (times batch) per matmul.

    Returns:
      [kh, kw, Ci, Co] float32 gradient of the HWIO kernel.
    """
    (kh, kw), (dh, dw) = kernel_hw, dilation
    b, _, wp, ci = x.shape
    _, ho, wo, co = g.shape
    rows = min(ho, -(-chunk_positions // (b * wp)))  # Output rows per chunk.
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
        dk = jax.lax.dot_general(
            cols.reshape(b * length, kh * kw * ci),
            gi,
            (((0,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
        return acc + dk, None

    acc = jnp.zeros((kh * kw * ci, co), jnp.float32)
    if chunks == 1:
        dk, _ = chunk(acc, jnp.int32(0))
    else:
        dk, _ = jax.lax.scan(chunk, acc, jnp.arange(chunks))
    return dk.reshape(kh, kw, ci, co)


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


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    dilation: tuple[int, int] = (1, 1),
    fast_weight_grad: bool | None = None,
) -> jax.Array:
    """Cross-correlation with explicit padding (PyTorch ``F.conv2d`` semantics), NHWC.

    Args:
      x: [B, H, W, Ci] input.
      kernel: [kh, kw, Ci, Co] HWIO kernel, same dtype as ``x``.
      stride: (sh, sw).
      padding: ((top, bottom), (left, right)) zero padding.
      dilation: (dh, dw) kernel dilation.
      fast_weight_grad: use the im2col weight gradient (stride 1 only); None: the global
        setting of :func:`set_fast_weight_grad`, else auto (see the module docstring).

    Returns:
      [B, Ho, Wo, Co] output.
    """
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)  # Hashable for custom_vjp.
    if kernel.shape[:2] == (1, 1) and stride == (1, 1) and padding == ((0, 0), (0, 0)):
        # A matmul over channels, whose gradients are matmuls too. On CPU XLA ran the input
        # gradient of FCN's 1x1 classifier (2x256x512, 26->32) as a convolution at 4 GFLOP/s,
        # 54 ms of a 0.27 s train step.
        return (x.reshape(-1, x.shape[-1]) @ kernel[0, 0]).reshape(*x.shape[:-1], -1)
    if stride == (1, 1):
        (top, bottom), (left, right) = padding
        out_h = x.shape[1] + top + bottom - dilation[0] * (kernel.shape[0] - 1)
        out_w = x.shape[2] + left + right - dilation[1] * (kernel.shape[1] - 1)
        if _use_fast_weight_grad(fast_weight_grad, x.shape, kernel.shape, out_h * out_w):
            return _conv_fast_wgrad(x, kernel, padding, dilation)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        stride,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=_DIMENSION_NUMBERS,
    )


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` on NHWC: symmetric explicit padding (not Flax 'SAME')."""

    features: int  # Output channels.
    kernel_size: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 1  # Zero rows/columns added on both sides.
    dilation: int | tuple[int, int] = 1
    use_bias: bool = True
    dtype: Dtype | None = None  # Compute dtype; None promotes input and params.
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = torch_default_kernel_init
    bias_init: Initializer = nn.initializers.zeros  # torch draws U(+-1/sqrt(fan_in)).
    fast_weight_grad: bool | None = None  # None: global setting, else auto (module doc).

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the convolution.

        Args:
          x: [B, H, W, Ci].

        Returns:
          [B, Ho, Wo, features] with Ho = (H + 2p - d*(k-1) - 1) // s + 1 (torch's formula).
        """
        kh, kw = _pair(self.kernel_size)
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        ph, pw = _pair(self.padding)
        y = conv2d(
            x,
            kernel,
            stride=_pair(self.stride),
            padding=((ph, ph), (pw, pw)),
            dilation=_pair(self.dilation),
            fast_weight_grad=self.fast_weight_grad,
        )
        return y if bias is None else y + bias


def _subpixel_taps(kernel_size: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    """Maps torch transposed-conv kernel indices onto a stride-1 sub-pixel conv.

    Output index ``s*m + a`` of ``ConvTranspose(k, s, p)`` sums ``x[m - t] * w[s*t + a + p]``
    over the t with ``0 <= s*t + a + p < k``. With t in [t_lo, t_hi] this is a stride-1
    correlation over the input padded by (t_hi, -t_lo), whose tap j holds ``t = t_hi - j``.

    Returns:
      (index [J, s] into the kernel axis, with ``kernel_size`` meaning "zero tap"; pad_lo;
      pad_hi).
    """
    ts = [
        (k - a - padding) // stride
        for a in range(stride)
        for k in range(kernel_size)
        if (k - a - padding) % stride == 0
    ]
    t_lo, t_hi = min(ts), max(ts)
    index = np.full((t_hi - t_lo + 1, stride), kernel_size, np.int32)
    for j in range(t_hi - t_lo + 1):
        for a in range(stride):
            k = stride * (t_hi - j) + a + padding
            if 0 <= k < kernel_size:
                index[j, a] = k
    return index, t_hi, -t_lo


def conv_transpose_col2im(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """``ConvTranspose2d`` (output exactly ``stride`` x input) as one matmul plus shifted adds.

    Every input pixel is multiplied by all k*k taps at once ([B*H*W, Ci] @ [Ci, k*k*Co]);
    output phase (a, b) then sums the taps that land on it (1, 2, 2 and 4 of them for
    k3 s2 p1), shifted as in :func:`_subpixel_taps`. This does k*k tap products per pixel
    where the sub-pixel convolution does J*J*s*s (16 vs 9 for k3 s2), and every gradient is
    a plain matmul, so on CPU it wins where channels are many and pixels few.

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
    index, pad_lo, pad_hi = _subpixel_taps(k, stride, padding)
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


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` whose output is exactly ``stride`` times its input.

    Never XLA's lhs-dilated convolution, whose gradient is 18-25x slower on CPU.
    Two exact formulations: "subpixel", a stride-1 convolution producing
    ``stride**2 * features`` channels ordered (a, b, features), then depth-to-space; and
    "col2im" (:func:`conv_transpose_col2im`). Auto (``method=None``) picks col2im on the CPU
    backend for inputs of at least ``COL2IM_MIN_CHANNELS`` channels (measured 1.4-3x faster
    there, up to 25% slower below) and subpixel otherwise. Supports every (k, s, p,
    output_padding) with ``k + output_padding - 2p == s``, e.g. (3, 2, 1, 1) in the FCN
    decoder and (2, 2, 0, 0) in U-Net.
    """

    features: int  # Output channels.
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    output_padding: int = 1
    use_bias: bool = True
    dtype: Dtype | None = None  # Compute dtype; None promotes input and params.
    param_dtype: Dtype = jnp.float32
    # torch computes a ConvTranspose2d's fan_in from its weight's dim 1, the output channels.
    kernel_init: Initializer = nn.initializers.variance_scaling(
        1.0 / 3.0, "fan_in", "uniform", in_axis=-1, out_axis=-2
    )
    bias_init: Initializer = nn.initializers.zeros  # torch draws U(+-1/sqrt(fan_in)).
    fast_weight_grad: bool | None = None  # Subpixel form's conv; see Conv2d.
    method: str | None = None  # "subpixel" or "col2im"; None: auto (see above).

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the transposed convolution.

        Args:
          x: [B, H, W, Ci].

        Returns:
          [B, s*H, s*W, features].
        """
        k, s, p, op = self.kernel_size, self.stride, self.padding, self.output_padding
        if k + op - 2 * p != s or not 0 <= op < s:
            raise ValueError(
                f"ConvTranspose2d(kernel_size={k}, stride={s}, padding={p}, output_padding={op})"
                " is unsupported: need kernel_size + output_padding - 2*padding == stride and"
                " 0 <= output_padding < stride"
            )
        ci = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, ci, self.features), self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)

        method = self.method
        if method is None:
            on_cpu = jax.default_backend() == "cpu"
            method = "col2im" if on_cpu and ci >= COL2IM_MIN_CHANNELS else "subpixel"
        if method == "col2im":
            y = conv_transpose_col2im(x, kernel, s, p)
            return y if bias is None else y + bias
        if method != "subpixel":
            raise ValueError(f"unknown ConvTranspose2d method {method!r}; valid: subpixel, col2im")

        index, pad_lo, pad_hi = _subpixel_taps(k, s, p)
        taps = index.shape[0]
        zero_padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
        # [J, s, J, s, Ci, Co] -> [Jy, Jx, Ci, a, b, Co] -> [J, J, Ci, s*s*Co].
        sub = zero_padded[index[:, :, None, None], index[None, None, :, :]]
        sub = sub.transpose(0, 2, 4, 1, 3, 5).reshape(taps, taps, ci, s * s * self.features)
        y = conv2d(
            x,
            sub,
            padding=((pad_lo, pad_hi), (pad_lo, pad_hi)),
            fast_weight_grad=self.fast_weight_grad,
        )
        b, h, w, _ = y.shape
        y = y.reshape(b, h, w, s, s, self.features).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, h * s, w * s, self.features)
        return y if bias is None else y + bias


class BatchNorm(nn.Module):
    """BatchNorm over NHWC channels that matches ``torch.nn.BatchNorm2d``.

    Flax's ``nn.BatchNorm`` updates the running variance with the biased batch variance;
    torch uses the unbiased one (n / (n - 1)). Statistics are always computed in float32.
    With ``axis_name`` set, batch statistics are averaged over that mapped axis (SyncBN);
    under ``jax.jit`` with a sharded batch the global batch is seen without it.
    """

    use_running_average: bool | None = None
    momentum: float = 0.9  # Flax convention: torch momentum 0.1 == 0.9 here.
    epsilon: float = 1e-5
    dtype: Dtype | None = None  # Output (compute) dtype; None keeps the input's.
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)

        x32 = x.astype(jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axes)
            mean_sq = jnp.mean(jnp.square(x32), axes)
            count = x.size // features
            if self.axis_name is not None:
                mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.axis_name)
                count = count * jax.lax.psum(1, self.axis_name)
            var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
            if not self.is_initializing():
                unbiased = var * (count / jnp.maximum(count - 1, 1))
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * unbiased
        y = (x32 - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        return y.astype(self.dtype or x.dtype)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """``torch.nn.MaxPool2d(2)`` on NHWC with even H and W.

    Written as a reshape and max rather than ``reduce_window``, whose gradient
    (select-and-scatter) is slow on the XLA CPU backend. Unlike torch, the gradient of a
    window with tied maxima is shared between them; after a ReLU such ties are zeros whose
    gradient the ReLU discards anyway.

    Args:
      x: [B, H, W, C], H and W even.

    Returns:
      [B, H/2, W/2, C].
    """
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def upsample_bilinear_2x(x: jax.Array) -> jax.Array:
    """``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)`` on NHWC.

    At scale 2 every output sample lies a quarter pixel from an input sample: the even
    output is 0.25 * previous + 0.75 * current input, the odd one 0.75 * current + 0.25 *
    next, with edges clamped. This is exact and, unlike ``jax.image.resize`` (dense
    interpolation matrices), costs O(output) on CPU.

    Args:
      x: [B, H, W, C].

    Returns:
      [B, 2H, 2W, C].
    """

    def along(x: jax.Array, axis: int) -> jax.Array:
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 1)
        xp = jnp.pad(x, pad, mode="edge")
        prev, cur, nxt = (jax.lax.slice_in_dim(xp, i, i + n, axis=axis) for i in range(3))
        even = 0.25 * prev + 0.75 * cur
        odd = 0.75 * cur + 0.25 * nxt
        y = jnp.stack([even, odd], axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = 2 * n
        return y.reshape(shape).astype(x.dtype)

    return along(along(x, 1), 2)


def check_spatial_multiple(x: jax.Array, multiple: int, model: str) -> None:
    """Raises ValueError unless ``x`` is [B, H, W, C] with H and W multiples of ``multiple``."""
    if x.ndim != 4 or x.shape[1] % multiple or x.shape[2] % multiple:
        raise ValueError(
            f"{model} needs input [B, H, W, C] with H and W multiples of {multiple}; "
            f"got shape {tuple(x.shape)}"
        )
