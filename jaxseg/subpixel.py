"""The tap map of a transposed convolution whose output is exactly ``stride`` x its input.

Both formulations of ``ConvTranspose2d`` use it: the sub-pixel stride-1 convolution
(``jaxseg.models.layers``) and the CPU col2im kernel (``jaxseg.cpu_kernels``).
"""

import numpy as np


def subpixel_taps(kernel_size: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
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
