"""The seed's "Custom" model: an FCN whose encoder is R2U-Net RRCNN blocks.

The recurrence follows R2U-Net's reference code (LeeJunHyun/Image_Segmentation,
``Recurrent_block``/``RRCNN_block``): one Conv3x3+BN+ReLU module ``f`` is shared across the
``t`` iterations of a recurrent block, ``x1 = f(x)`` then ``t`` times ``x1 = f(x + x1)``, so
``f`` (and its BatchNorm running-statistics update) runs ``t + 1`` times per block.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models.fcn import fcn_decoder, xavier_uniform
from jaxseg.models.layers import (
    BatchNorm,
    Conv2d,
    Dtype,
    check_spatial_multiple,
    max_pool_2x2,
)


class RecurrentBlock(nn.Module):
    """R2U-Net recurrent convolution: ``x1 = f(x)``, then ``t`` times ``x1 = f(x + x1)``."""

    features: int  # Channels of input and output.
    t: int = 2  # Recurrence steps after the first application.
    dtype: Dtype = jnp.float32  # Compute dtype.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps [B, H, W, features] to [B, H, W, features]."""
        conv = Conv2d(
            self.features,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=xavier_uniform,
            kernels=self.kernels,
            name="conv",
        )
        bn = BatchNorm(
            use_running_average=not train,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
            name="bn",
        )

        def f(v: jax.Array) -> jax.Array:
            return nn.relu(bn(conv(v)))

        x1 = f(x)
        for _ in range(self.t):
            x1 = f(x + x1)
        return x1


class RRCNNBlock(nn.Module):
    """R2U-Net RRCNN block: ``y = conv1x1(x)``; ``y + rb2(rb1(y))``."""

    features: int  # Output channels.
    t: int = 2  # Recurrence steps of each recurrent block.
    dtype: Dtype = jnp.float32  # Compute dtype.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps [B, H, W, Ci] to [B, H, W, features]."""
        x = Conv2d(
            self.features,
            kernel_size=1,
            padding=0,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=xavier_uniform,
            kernels=self.kernels,
            name="conv1x1",
        )(x)
        y = x
        for i in range(2):
            y = RecurrentBlock(
                self.features,
                t=self.t,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                bn_axis_name=self.bn_axis_name,
                kernels=self.kernels,
                name=f"rcnn_{i}",
            )(y, train=train)
        return x + y


class RRCNNFCN(nn.Module):
    """The "Custom" model: ``depth`` x [RRCNN block -> 2x2 max-pool], FCN decoder, 1x1 classifier.

    Widths are ``(32, 64, 128, 256, 512)[:depth]``; the seed ran depth 2 (three encoder
    layers removed to fit 11 GB). Submodules ``encoder_i``/``decoder_i``/``classifier`` map
    onto the PyTorch reference's ``encoder.i``/``decoder.i``/``classifier``.
    """

    num_classes: int
    depth: int = 5  # Encoder blocks (and decoder blocks); the seed used 2.
    t: int = 2  # Recurrence steps of each recurrent block.
    dtype: Dtype = jnp.float32  # Compute dtype, e.g. jnp.bfloat16.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @property
    def widths(self) -> tuple[int, ...]:
        return (32, 64, 128, 256, 512)[: self.depth]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Segments a batch of images.

        Args:
          x: [B, H, W, C] images, H and W multiples of 2**depth.
          train: use batch statistics and update the BatchNorm running averages.

        Returns:
          [B, H, W, num_classes] float32 logits.

        Raises:
          ValueError: if depth is not in 1..5 or H, W are not multiples of 2**depth.
        """
        if not 1 <= self.depth <= 5:
            raise ValueError(f"RRCNNFCN depth must be in 1..5; got {self.depth}")
        check_spatial_multiple(x, 2**self.depth, f"RRCNNFCN(depth={self.depth})")
        x = x.astype(self.dtype)
        for i, features in enumerate(self.widths):
            x = RRCNNBlock(
                features,
                t=self.t,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                bn_axis_name=self.bn_axis_name,
                kernels=self.kernels,
                name=f"encoder_{i}",
            )(x, train=train)
            x = max_pool_2x2(x)
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
