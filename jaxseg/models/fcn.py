"""The FCN encoder-decoder baseline of the seed report."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models.layers import (
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dtype,
    check_spatial_multiple,
)

# The seed initialises every convolution with Xavier-uniform weights. Biases start at zero
# (torch's default would draw them from U(+-1/sqrt(fan_in)); the reference does the same).
xavier_uniform = nn.initializers.xavier_uniform()


class ConvReLUBN(nn.Module):
    """Conv 3x3 stride 2 (or transposed conv k3 s2 p1 op1) -> ReLU -> BatchNorm.

    The seed applies BatchNorm after the ReLU. Encoder blocks halve H and W, decoder blocks
    (``transpose=True``) double them.
    """

    features: int  # Output channels.
    transpose: bool = False  # Decoder block: ConvTranspose2d(k3, s2, p1, output_padding 1).
    dtype: Dtype = jnp.float32  # Compute dtype.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps [B, H, W, Ci] to [B, H/2, W/2, features] (or [B, 2H, 2W, features])."""
        conv_cls: Any = ConvTranspose2d if self.transpose else Conv2d
        kwargs = {"output_padding": 1} if self.transpose else {}
        x = conv_cls(
            self.features,
            kernel_size=3,
            stride=2,
            padding=1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=xavier_uniform,
            kernels=self.kernels,
            name="conv",
            **kwargs,
        )(x)
        x = nn.relu(x)
        return BatchNorm(
            use_running_average=not train,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
            name="bn",
        )(x)


def fcn_decoder(
    x: jax.Array,
    widths: tuple[int, ...],
    num_classes: int,
    *,
    train: bool,
    dtype: Dtype,
    param_dtype: Dtype,
    bn_axis_name: str | None,
    kernels: str,
) -> jax.Array:
    """Applies the FCN decoder and the 1x1 classifier inside the caller's compact scope
    (submodules ``decoder_i`` and ``classifier``), shared by FCN and the RRCNN model.

    Args:
      x: [B, h, w, C] encoder output.
      widths: encoder widths; the decoder outputs them in reverse, one block per width.
      num_classes: classifier outputs.

    Returns:
      [B, h * 2**len(widths), w * 2**len(widths), num_classes] float32 logits.
    """
    for i, features in enumerate(reversed(widths)):
        x = ConvReLUBN(
            features,
            transpose=True,
            dtype=dtype,
            param_dtype=param_dtype,
            bn_axis_name=bn_axis_name,
            kernels=kernels,
            name=f"decoder_{i}",
        )(x, train=train)
    x = Conv2d(
        num_classes,
        kernel_size=1,
        padding=0,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=xavier_uniform,
        kernels=kernels,
        name="classifier",
    )(x)
    return x.astype(jnp.float32)


class FCN(nn.Module):
    """FCN baseline: 5 x [Conv s2 -> ReLU -> BN], 5 x [ConvT s2 -> ReLU -> BN], 1x1 classifier.

    Encoder 3->32->64->128->256->512, decoder 512->512->256->128->64->32. Submodules
    ``encoder_i``/``decoder_i``/``classifier`` map onto the PyTorch reference's
    ``encoder.i``/``decoder.i``/``classifier``.
    """

    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)  # Encoder outputs; a tiny set for tests.
    dtype: Dtype = jnp.float32  # Compute dtype, e.g. jnp.bfloat16.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Segments a batch of images.

        Args:
          x: [B, H, W, C] images, H and W multiples of 2**len(widths) (32 by default).
          train: use batch statistics and update the BatchNorm running averages.

        Returns:
          [B, H, W, num_classes] float32 logits.

        Raises:
          ValueError: if H or W is not a multiple of 2**len(widths).
        """
        check_spatial_multiple(x, 2 ** len(self.widths), "FCN")
        x = x.astype(self.dtype)
        for i, features in enumerate(self.widths):
            x = ConvReLUBN(
                features,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                bn_axis_name=self.bn_axis_name,
                kernels=self.kernels,
                name=f"encoder_{i}",
            )(x, train=train)
        return fcn_decoder(
            x,
            self.widths,
            self.num_classes,
            train=train,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            kernels=self.kernels,
        )
