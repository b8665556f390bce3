"""Layers shared by every model family, with PyTorch semantics.

Convolutions take NHWC activations and store their kernels so that a PyTorch weight maps
onto them by a transpose: ``Conv2d.kernel`` is HWIO (torch OIHW ``.transpose(2, 3, 1, 0)``),
``ConvTranspose2d.kernel`` is (kh, kw, in, out) (torch (in, out, kh, kw)
``.transpose(2, 3, 0, 1)``).

Every layer and model has a ``kernels`` field naming the convolution formulations: "xla"
(the default) is ``lax.conv_general_dilated`` and, for transposed convolutions, the exact
sub-pixel stride-1 convolution plus depth-to-space; "cpu" swaps in, per layer and where they
were measured to win, the kernels of ``jaxseg.cpu_kernels``. Callers choose with
``jaxseg.cpu_kernels.resolve`` when they build a model. Unpadded stride-1 1x1 convolutions are
matmuls over channels with either.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import cpu_kernels

Dtype = Any
Initializer = Any
Padding = tuple[tuple[int, int], tuple[int, int]]

# PyTorch's default conv weight init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), +...).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# The values a layer's `kernels` field takes; "auto" is resolved before a model is built.
LAYER_KERNELS = ("xla", "cpu")


def _check_kernels(kernels: str) -> None:
    if kernels not in LAYER_KERNELS:
        raise ValueError(
            f"unknown layer kernels {kernels!r}; valid: {', '.join(LAYER_KERNELS)}"
            " (build the model with kernels=jaxseg.cpu_kernels.resolve(...))"
        )


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def _taps_reading_input(size: int, taps: int, dilation: int, padding: tuple[int, int]):
    """(first, last) taps along one axis of a stride-1 convolution that read the input at some
    output position; the taps outside them read only zero padding. None if none does."""
    lo, hi = padding
    out = size + lo + hi - dilation * (taps - 1)
    # Output i reads input i + j * dilation - lo, for i in [0, out).
    reading = [
        j for j in range(taps) if j * dilation - lo <= size - 1 and out - 1 + j * dilation >= lo
    ]
    return (reading[0], reading[-1]) if reading else None


def drop_padding_taps(
    input_hw: tuple[int, int], kernel: jax.Array, padding: Padding, dilation: tuple[int, int]
) -> tuple[jax.Array, Padding]:
    """(kernel, padding) of a stride-1 convolution without the taps that read only padding.

    A dilated convolution on a small map has such taps (DeepLabV3's ASPP at rate 36 on a
    32-row map: both off-centre kernel rows); they add zeros, so the convolution with the
    remaining taps and correspondingly less padding has the same output, and the dropped
    taps' weight gradient is zero either way.

    Args:
      input_hw: (H, W) of the input.
      kernel: [kh, kw, Ci, Co] HWIO kernel.
      padding: ((top, bottom), (left, right)).
      dilation: (dh, dw).

    Returns:
      The kernel restricted to the taps that read the input, and the padding that keeps the
      output's size; unchanged where no tap can be dropped.
    """
    kept, new_padding = [], []
    for axis in range(2):
        taps = kernel.shape[axis]
        reading = _taps_reading_input(input_hw[axis], taps, dilation[axis], padding[axis])
        first, last = reading or (0, taps - 1)
        lo = padding[axis][0] - first * dilation[axis]
        hi = padding[axis][1] - (taps - 1 - last) * dilation[axis]
        if lo < 0 or hi < 0:  # Would crop the input: keep the kernel whole.
            first, last, (lo, hi) = 0, taps - 1, padding[axis]
        kept.append(slice(first, last + 1))
        new_padding.append((lo, hi))
    return kernel[tuple(kept)], tuple(new_padding)


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    dilation: tuple[int, int] = (1, 1),
    kernels: str = "xla",
) -> jax.Array:
    """Cross-correlation with explicit padding (PyTorch ``F.conv2d`` semantics), NHWC.

    Args:
      x: [B, H, W, Ci] input.
      kernel: [kh, kw, Ci, Co] HWIO kernel, same dtype as ``x``.
      stride: (sh, sw).
      padding: ((top, bottom), (left, right)) zero padding.
      dilation: (dh, dw) kernel dilation.
      kernels: "xla", or "cpu" for :func:`strided_conv2d` where :func:`strided_by_phases`
        holds, the tap matmuls of stride-1 dilated convolutions with many input channels
        (``cpu_kernels.use_tap_matmuls``) and ``cpu_kernels.conv2d_in_strips`` for stride-1
        undilated ones from 64 input channels up to a size (``cpu_kernels.use_strips``).

    Returns:
      [B, Ho, Wo, Co] output.

    Raises:
      ValueError: if ``kernels`` is not "xla" or "cpu".
    """
    _check_kernels(kernels)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    static_hw = all(isinstance(n, int) for n in x.shape[1:3])  # Not with symbolic H, W.
    if stride == (1, 1) and static_hw:
        kernel, padding = drop_padding_taps(x.shape[1:3], kernel, padding, dilation)
    if kernel.shape[:2] == (1, 1) and stride == (1, 1) and padding == ((0, 0), (0, 0)):
        # A matmul over channels, whose gradients are matmuls too. On CPU XLA ran the input
        # gradient of FCN's 1x1 classifier (2x256x512, 26->32) as a convolution at 4 GFLOP/s,
        # 54 ms of a 0.27 s train step.
        return (x.reshape(-1, x.shape[-1]) @ kernel[0, 0]).reshape(*x.shape[:-1], -1)
    if (
        kernels == "cpu"
        and static_hw
        and strided_by_phases(x.shape[1:3], kernel.shape, stride, padding, dilation)
    ):
        return strided_conv2d(x, kernel, stride[0], padding[0][0])
    if (
        kernels == "cpu"
        and stride == (1, 1)
        and static_hw
        and cpu_kernels.use_tap_matmuls(kernel.shape, dilation)
    ):
        return cpu_kernels.conv2d_tap_matmuls(x, kernel, padding, dilation)
    if (
        kernels == "cpu"
        and static_hw
        and cpu_kernels.use_strips(x.shape, kernel.shape, stride, padding, dilation)
    ):
        return cpu_kernels.conv2d_in_strips(x, kernel, padding)
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
    kernels: str = "xla"  # "xla" or "cpu" (module docstring).

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
            kernels=self.kernels,
        )
        return y if bias is None else y + bias


def _subpixel_taps(kernel_size: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    """Maps torch transposed-conv kernel indices onto a stride-1 sub-pixel conv.

    Output index ``s*m + a`` of ``ConvTranspose(k, s, p)`` sums ``x[m - t] * w[s*t + a + p]``
    over the t with ``0 <= s*t + a + p < k``. With t in [t_lo, t_hi] this is a stride-1
    correlation over the input padded by (t_hi, -t_lo), whose tap j holds ``t = t_hi - j``.

    Args:
      kernel_size: k.
      stride: s.
      padding: torch's padding p.

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


def conv_transpose_subpixel(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, *, kernels: str = "xla"
) -> jax.Array:
    """``ConvTranspose2d`` (output exactly ``stride`` x input) as a sub-pixel convolution.

    A stride-1 convolution producing ``stride**2 * Co`` channels ordered (a, b, Co), then
    depth-to-space. Exact, and never XLA's lhs-dilated convolution, whose gradient is 18-25x
    slower on CPU.

    Args:
      x: [B, H, W, Ci].
      kernel: [k, k, Ci, Co] (torch's (Ci, Co, k, k) transposed (2, 3, 0, 1)).
      stride: s.
      padding: torch's padding p, with k + output_padding - 2p == s.
      kernels: the stride-1 convolution's, as in :func:`conv2d`.

    Returns:
      [B, s*H, s*W, Co].
    """
    k, _, ci, co = kernel.shape
    index, pad_lo, pad_hi = _subpixel_taps(k, stride, padding)
    taps = index.shape[0]
    zero_padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    # [J, s, J, s, Ci, Co] -> [Jy, Jx, Ci, a, b, Co] -> [J, J, Ci, s*s*Co].
    sub = zero_padded[index[:, :, None, None], index[None, None, :, :]]
    sub = sub.transpose(0, 2, 4, 1, 3, 5).reshape(taps, taps, ci, stride * stride * co)
    y = conv2d(x, sub, padding=((pad_lo, pad_hi), (pad_lo, pad_hi)), kernels=kernels)
    return _depth_to_space(y, stride)


def _depth_to_space(y: jax.Array, stride: int) -> jax.Array:
    """[B, H, W, s*s*C] with channels ordered (a, b, C) to [B, s*H, s*W, C], where channel
    block (a, b) holds output pixels (s*m + a, s*n + b)."""
    b, h, w, c = y.shape
    co = c // (stride * stride)
    y = y.reshape(b, h, w, stride, stride, co).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * stride, w * stride, co)


def _phase_taps(
    index: np.ndarray, kernel_size: int, pad_lo: int
) -> tuple[list[int], int, tuple[int, int]]:
    """(kernel indices, input rows to skip, (lo, hi) padding) of the stride-1 correlation that
    computes one output phase along one axis, from that phase's column of
    :func:`_subpixel_taps`' map."""
    taps = [j for j, k in enumerate(index) if k < kernel_size]
    first, last = taps[0], taps[-1]  # Contiguous: the kernel index falls by s per tap.
    lo = pad_lo - first
    # Where the phase's first tap reads past the input's start, skip input rows rather than
    # pad negatively: XLA's CPU weight gradient of an unfused convolution with negative
    # padding came out wrong outside jit (jax 0.10.2, a one-tap phase).
    skip = max(0, -lo)
    lo += skip
    return [int(k) for k in index[first : last + 1]], skip, (lo, last - first - lo + skip)


def _phases(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """The forward pass of :func:`conv_transpose_phases`."""
    k = kernel.shape[0]
    index, pad_lo, _ = _subpixel_taps(k, stride, padding)
    axes = [_phase_taps(index[:, a], k, pad_lo) for a in range(stride)]
    phases = [
        conv2d(
            x[:, row_skip:, column_skip:],
            kernel[np.ix_(rows, columns)],
            padding=(row_padding, column_padding),
        )
        for rows, row_skip, row_padding in axes
        for columns, column_skip, column_padding in axes
    ]
    return _depth_to_space(jnp.concatenate(phases, axis=-1), stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose_phases(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """``ConvTranspose2d`` (output exactly ``stride`` x input) as one convolution per phase.

    Output phase (a, b), the pixels (s*m + a, s*n + b), sums only the taps that land on it: a
    stride-1 correlation of the input with those taps (1x1, 1x2, 2x1 and 2x2 of them for k3 s2
    p1: 9 tap products per input pixel where :func:`conv_transpose_subpixel` does 16). The
    phases are then interleaved. Each is a small direct convolution (a matmul for 1x1), which
    XLA's CPU backend runs faster than the sub-pixel convolution or a col2im matmul
    (benchmarks/NOTES.md, section 13). The backward pass is the adjoint strided convolution
    (:func:`strided_conv2d`) and a patch matmul for the kernel (section 14). Needs
    ``k >= stride``, so that every phase has a tap.

    Args:
      x: [B, H, W, Ci].
      kernel: [k, k, Ci, Co] (torch's (Ci, Co, k, k) transposed (2, 3, 0, 1)).
      stride: s.
      padding: torch's padding p, with k + output_padding - 2p == s.

    Returns:
      [B, s*H, s*W, Co].
    """
    return _phases(x, kernel, stride, padding)


def _conv_transpose_phases_fwd(x, kernel, stride, padding):
    return _phases(x, kernel, stride, padding), (x, kernel)


def _conv_transpose_phases_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    # A transposed convolution's adjoint is the strided convolution with the same kernel.
    dx = strided_conv2d(dy, kernel.transpose(0, 1, 3, 2), stride, padding)
    dk = cpu_kernels.strided_weight_grad(dy, x, kernel.shape[0], stride, padding)
    return dx, dk.transpose(0, 1, 3, 2)


conv_transpose_phases.defvjp(_conv_transpose_phases_fwd, _conv_transpose_phases_bwd)


def strided_by_phases(
    input_hw: tuple[int, int],
    kernel_shape: Sequence[int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
) -> bool:
    """Whether :func:`strided_conv2d` computes this convolution: a square kernel with
    ``k >= s`` taps, one stride and one padding p on every side, no dilation, and an output of
    exactly 1/s of the input (which makes its adjoint a :func:`conv_transpose_phases`)."""
    k, s = kernel_shape[0], stride[0]
    (top, bottom), (left, right) = padding
    return (
        s > 1
        and stride[1] == s
        and dilation == (1, 1)
        and kernel_shape[1] == k >= s
        and top == bottom == left == right
        and 0 <= s + 2 * top - k < s
        and input_hw[0] % s == 0
        and input_hw[1] % s == 0
    )


def _strided(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    pads = ((padding, padding), (padding, padding))
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), pads, dimension_numbers=_DIMENSION_NUMBERS
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """A stride-s convolution (:func:`strided_by_phases`) whose gradients avoid XLA's forms.

    The forward pass is XLA's convolution. XLA's CPU backend computes the input gradient as a
    convolution over the zero-dilated output gradient and the kernel gradient with a dilated
    kernel; here the input gradient is the adjoint transposed convolution
    (:func:`conv_transpose_phases`) and the kernel gradient a patch matmul
    (``cpu_kernels.strided_weight_grad``): 1.5-2x faster for FCN's encoder layers
    (benchmarks/NOTES.md, section 14).

    Args:
      x: [B, H, W, Ci], H and W multiples of s.
      kernel: [k, k, Ci, Co] HWIO kernel.
      stride: s.
      padding: p on every side.

    Returns:
      [B, H/s, W/s, Co].
    """
    return _strided(x, kernel, stride, padding)


def _strided_conv2d_fwd(x, kernel, stride, padding):
    return _strided(x, kernel, stride, padding), (x, kernel)


def _strided_conv2d_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    dx = conv_transpose_phases(dy, kernel.transpose(0, 1, 3, 2), stride, padding)
    dk = cpu_kernels.strided_weight_grad(x, dy, kernel.shape[0], stride, padding)
    return dx, dk


strided_conv2d.defvjp(_strided_conv2d_fwd, _strided_conv2d_bwd)


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` whose output is exactly ``stride`` times its input.

    "xla" computes it by :func:`conv_transpose_subpixel`; "cpu" by
    :func:`conv_transpose_phases` where taps overlap (``kernel_size > stride``), else
    sub-pixel, which then is a matmul. Supports every (k, s, p, output_padding) with ``k +
    output_padding - 2p == s``, e.g. (3, 2, 1, 1) in the FCN decoder and (2, 2, 0, 0) in
    U-Net.
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
    kernels: str = "xla"  # "xla" or "cpu" (see above).

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
        _check_kernels(self.kernels)
        ci = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, ci, self.features), self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.kernels == "cpu" and k > s:
            y = conv_transpose_phases(x, kernel, s, p)
        else:
            y = conv_transpose_subpixel(x, kernel, s, p, kernels=self.kernels)
        return y if bias is None else y + bias


def batch_statistics(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of ``x`` [..., C], over ``axis_name`` too if set."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    mean_sq = jnp.mean(jnp.square(x), axes)
    if axis_name is not None:
        mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
    return mean, jnp.maximum(mean_sq - jnp.square(mean), 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_normalize(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, axis_name: str | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Train-mode BatchNorm with a hand-written backward pass.

    Autodiff of the forward pass gives the right gradient in more passes over the activation;
    on the CPU this backward (two per-channel sums in one pass, then one elementwise pass)
    ran BatchNorm's forward and backward in 0.62x the time (47 against 76 ms at [2, 256, 512,
    64] float32, benchmarks/NOTES.md).

    Args:
      x: [..., C] float32 activations.
      scale, bias: [C] affine parameters.
      epsilon: added to the variance.
      axis_name: mapped axis to take the statistics over as well (synchronised BatchNorm).

    Returns:
      (normalised ``x``, batch mean [C], biased batch variance [C]); all three are
      differentiable.
    """
    return _batch_normalize_fwd(x, scale, bias, epsilon, axis_name)[0]


def _batch_normalize_fwd(x, scale, bias, epsilon, axis_name):
    mean, var = batch_statistics(x, axis_name)
    inv_std = jax.lax.rsqrt(var + epsilon)
    y = (x - mean) * (inv_std * scale) + bias
    return (y, mean, var), (x, mean, inv_std, scale)


def _batch_normalize_bwd(epsilon, axis_name, residuals, cotangents):
    del epsilon  # Inside inv_std.
    x, mean, inv_std, scale = residuals
    g, g_mean, g_var = cotangents
    axes = tuple(range(x.ndim - 1))
    centred = x - mean
    sum_g = jnp.sum(g, axes)
    sum_g_centred = jnp.sum(g * centred, axes)
    # The parameters' gradients are this device's sums; the input's needs the global ones.
    d_scale, d_bias = inv_std * sum_g_centred, sum_g
    count = x.size // x.shape[-1]
    if axis_name is not None:
        sum_g, sum_g_centred, g_mean, g_var = jax.lax.psum(
            (sum_g, sum_g_centred, g_mean, g_var), axis_name
        )
        count = count * jax.lax.psum(1, axis_name)
    a = inv_std * scale
    # d/dx of y, of mean (1/n) and of the variance (2 (x - mean) / n), per channel.
    slope = (a * inv_std * inv_std * sum_g_centred - 2.0 * g_var) / count
    offset = (a * sum_g - g_mean) / count
    dx = a * g - slope * centred - offset
    return dx, d_scale, d_bias


batch_normalize.defvjp(_batch_normalize_fwd, _batch_normalize_bwd)


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
            inv_std = jax.lax.rsqrt(ra_var.value + self.epsilon)
            y = (x32 - ra_mean.value) * (inv_std * scale) + bias
        else:
            y, mean, var = batch_normalize(x32, scale, bias, self.epsilon, self.axis_name)
            if not self.is_initializing():
                count = x.size // features
                if self.axis_name is not None:
                    count = count * jax.lax.psum(1, self.axis_name)
                unbiased = var * (count / jnp.maximum(count - 1, 1))
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * unbiased
        return y.astype(self.dtype or x.dtype)


def _windows(x: jax.Array) -> list[jax.Array]:
    """The four taps of every 2x2 window of [B, H, W, C], in row-major order."""
    b, h, w, c = x.shape
    windows = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return [windows[:, :, i, :, j] for i in range(2) for j in range(2)]


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """``torch.nn.MaxPool2d(2)`` on NHWC with even H and W, gradient included.

    The forward pass is a reshape and max rather than ``reduce_window``, whose gradient
    (select-and-scatter) is slow on the XLA CPU backend. The backward pass sends each
    window's gradient to its first maximum in row-major order, as torch does, by the tap
    index the forward pass kept. Autodiff of the max instead compares the input with the
    output again: forward and backward took 86 ms against 23 ms here at [2, 256, 512, 64] on
    the CPU (benchmarks/NOTES.md), and where XLA recomputes the input in another fusion with
    other rounding, the comparison can miss and drop a window's gradient.

    Args:
      x: [B, H, W, C], H and W even.

    Returns:
      [B, H/2, W/2, C].
    """
    return functools.reduce(jnp.maximum, _windows(x))


def _max_pool_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    taps = _windows(x)
    best, index = taps[0], jnp.zeros(taps[0].shape, jnp.int8)
    for k, tap in enumerate(taps[1:], 1):
        greater = tap > best  # Strict: ties keep the first maximum.
        best = jnp.where(greater, tap, best)
        index = jnp.where(greater, jnp.int8(k), index)
    return best, index


def _max_pool_bwd(index: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    zero = jnp.zeros_like(g)
    taps = [jnp.where(index == k, g, zero) for k in range(4)]
    rows = [jnp.stack(taps[2 * i : 2 * i + 2], axis=3) for i in range(2)]
    b, h, w, c = g.shape
    return (jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def resize_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` on NHWC.

    Each output sample mixes the two input samples around its source coordinate
    ``(i + 0.5) * in / out - 0.5``, clamped at the edges (no antialiasing when
    downsampling, as torch). ``jax.image.resize(..., antialias=False)`` computes the same
    with dense [out, in] interpolation matrices; here it costs O(output): an integer
    upscale is, for each of its phases, a weighted sum of two shifted slices of the
    edge-padded input, other ratios gather the two taps. Upsampling the U-Net base 16
    logits [8, 128, 256, 27] to the labels' 256x512 (validation): 184 -> 56 ms.

    Args:
      x: [B, H, W, C].
      size: (height, width) of the output.

    Returns:
      [B, *size, C] in x's dtype.
    """
    return _resize_axis(_resize_axis(x, 1, size[0]), 2, size[1])


def _resize_axis(x: jax.Array, axis: int, n_out: int) -> jax.Array:
    n_in = x.shape[axis]
    if n_out == n_in:
        return x
    if n_out % n_in == 0:
        return _upsample_axis(x, axis, n_out // n_in)
    source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    first = np.minimum(np.floor(source).astype(np.int32), n_in - 1)
    second = np.minimum(first + 1, n_in - 1)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w = jnp.asarray((source - first).reshape(shape), x.dtype)
    return (1 - w) * jnp.take(x, first, axis=axis) + w * jnp.take(x, second, axis=axis)


def _upsample_axis(x: jax.Array, axis: int, factor: int) -> jax.Array:
    """Output ``factor * i + p`` lies ``(p + 0.5) / factor - 0.5`` input samples from input
    ``i``; past the edges, the padding repeats the edge sample (torch's clamping)."""
    n = x.shape[axis]
    first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    padded = jax.lax.concatenate([first, x, last], axis)
    phases = []
    for p in range(factor):
        offset = (p + 0.5) / factor - 0.5
        start = 1 + math.floor(offset)
        w = offset - math.floor(offset)
        below = jax.lax.slice_in_dim(padded, start, start + n, axis=axis)
        above = jax.lax.slice_in_dim(padded, start + 1, start + 1 + n, axis=axis)
        phases.append((1 - w) * below + w * above)
    shape = list(x.shape)
    shape[axis] = factor * n
    return jnp.stack(phases, axis=axis + 1).reshape(shape).astype(x.dtype)


def check_spatial_multiple(x: jax.Array, multiple: int, model: str) -> None:
    """Raises ValueError unless ``x`` is [B, H, W, C] with H and W multiples of ``multiple``."""
    if x.ndim != 4 or x.shape[1] % multiple or x.shape[2] % multiple:
        raise ValueError(
            f"{model} needs input [B, H, W, C] with H and W multiples of {multiple}; "
            f"got shape {tuple(x.shape)}"
        )


def call_rematerialized(block: nn.Module, *args: jax.Array, train: bool) -> jax.Array:
    """``block(*args, train=train)``, whose backward pass recomputes the block's activations
    from its inputs instead of keeping them from the forward pass.

    Unlike ``nn.remat``, the recomputation's inputs depend on the block's output cotangent,
    so XLA can neither merge it with the forward pass (CSE) nor schedule it before the
    backward pass reaches the block. ``nn.remat`` separates the two with optimisation
    barriers, which XLA's CPU pipeline removes early: its recomputation was merged into or
    scheduled right after the forward pass, and the compiled peak did not drop.

    Args:
      block: an unbound module whose ``__call__`` takes ``(*args, train=...)`` and draws no
        random numbers; its variables other than "params" (BatchNorm's "batch_stats") are
        updated by the forward pass only.
      *args: the block's array inputs.
      train: passed on to the block.

    Returns:
      The block's output (one array).
    """
    definition = block.clone(parent=None)

    def forward(module: nn.Module, *args: jax.Array) -> jax.Array:
        return module(*args, train=train)

    def forward_keeping_inputs(module: nn.Module, *args: jax.Array):
        variables = module.variables  # Before the call, which updates the running statistics.
        return module(*args, train=train), (variables, args)

    def backward(residuals, cotangent: jax.Array):
        variables, args = residuals
        # A zero that XLA cannot fold (0 * NaN is NaN), computed from the cotangent: added to
        # the inputs, it makes the recomputation wait for the cotangent.
        zero = 0 * cotangent.reshape(-1)[0]
        args = tuple(a + zero.astype(a.dtype) for a in args)

        def output(params, *args: jax.Array) -> jax.Array:
            variables_in = {**variables, "params": params}
            return definition.apply(variables_in, *args, train=train, mutable=True)[0]

        _, vjp = jax.vjp(output, variables["params"], *args)
        params_cotangent, *args_cotangents = vjp(cotangent)
        return ({"params": params_cotangent}, *args_cotangents)

    return nn.custom_vjp(forward, forward_fn=forward_keeping_inputs, backward_fn=backward)(
        block, *args
    )
