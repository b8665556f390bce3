"""U-Net (Ronneberger et al.) with "same" 3x3 convolutions and BatchNorm.

The layout follows milesial/Pytorch-UNet: ``DoubleConv`` = 2 x [Conv3x3 (no bias) -> BN ->
ReLU]; 2x2 max-pool down; up either by ``ConvTranspose2d(C, C/2, k2, s2)`` or, with
``upsample="bilinear"``, by a parameter-free bilinear x2 with the deepest width halved
(milesial's ``factor = 2``) and each ``DoubleConv`` going through ``in/2`` middle channels.
One difference: bilinear upsampling here uses ``align_corners=False`` (torch's default and
``jax.image.resize``'s convention), where milesial uses ``align_corners=True``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models.layers import (
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dtype,
    call_rematerialized,
    check_spatial_multiple,
    max_pool_2x2,
    resize_bilinear,
)

UPSAMPLE_MODES = ("transpose", "bilinear")


class DoubleConv(nn.Module):
    """2 x [Conv3x3 pad 1 (no bias) -> BatchNorm -> ReLU]."""

    features: int  # Output channels.
    mid_features: int | None = None  # Channels between the two convs; None: ``features``.
    dtype: Dtype = jnp.float32  # Compute dtype.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps [B, H, W, Ci] to [B, H, W, features]."""
        for i, features in enumerate((self.mid_features or self.features, self.features), 1):
            x = Conv2d(
                features,
                use_bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernels=self.kernels,
                name=f"conv{i}",
            )(x)
            x = BatchNorm(
                use_running_average=not train,
                dtype=self.dtype,
                axis_name=self.bn_axis_name,
                name=f"bn{i}",
            )(x)
            x = nn.relu(x)
        return x


class Up(nn.Module):
    """Upsample x2, concatenate [skip, upsampled] on channels, DoubleConv."""

    features: int  # Output channels.
    upsample: str = "transpose"  # "transpose" (ConvTranspose k2 s2) or "bilinear".
    dtype: Dtype = jnp.float32  # Compute dtype.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array, *, train: bool) -> jax.Array:
        """Maps x [B, h, w, C] and skip [B, 2h, 2w, Cs] to [B, 2h, 2w, features]."""
        channels = x.shape[-1]
        if self.upsample == "bilinear":
            x = resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]))
            mid = (channels + skip.shape[-1]) // 2
        else:
            x = ConvTranspose2d(
                channels // 2,
                kernel_size=2,
                stride=2,
                padding=0,
                output_padding=0,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernels=self.kernels,
                name="up",
            )(x)
            mid = None
        x = jnp.concatenate([skip, x], axis=-1)
        return DoubleConv(
            self.features,
            mid,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            kernels=self.kernels,
            name="conv",
        )(x, train=train)


class UNet(nn.Module):
    """U-Net with widths ``base_width * (1, 2, 4, 8, 16)`` and a 1x1 classifier.

    Submodules ``inc``, ``down_i``, ``up_i``, ``outc`` map onto the PyTorch reference's
    ``inc``, ``down.i``, ``up.i``, ``outc``.
    """

    num_classes: int
    base_width: int = 64  # Channels of the first level; 64 in the paper.
    upsample: str = "transpose"  # "transpose" (ConvTranspose k2 s2) or "bilinear".
    dtype: Dtype = jnp.float32  # Compute dtype, e.g. jnp.bfloat16.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis for cross-device BatchNorm (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).
    # Rematerialise each DoubleConv / Up block: the backward pass recomputes a block's
    # activations from its input instead of keeping them, trading compute for peak memory.
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Segments a batch of images.

        Args:
          x: [B, H, W, C] images, H and W multiples of 16.
          train: use batch statistics and update the BatchNorm running averages.

        Returns:
          [B, H, W, num_classes] float32 logits.

        Raises:
          ValueError: if H or W is not a multiple of 16 or ``upsample`` is unknown.
        """
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample {self.upsample!r}; valid: {UPSAMPLE_MODES}")
        check_spatial_multiple(x, 16, "UNet")
        common = {
            "dtype": self.dtype,
            "param_dtype": self.param_dtype,
            "bn_axis_name": self.bn_axis_name,
            "kernels": self.kernels,
        }
        widths = [self.base_width * m for m in (1, 2, 4, 8, 16)]
        if self.upsample == "bilinear":
            # Bilinear upsampling keeps channels, so the deepest level is halved instead.
            widths[4] //= 2

        def call(block: nn.Module, *args: jax.Array) -> jax.Array:
            if self.remat:
                return call_rematerialized(block, *args, train=train)
            return block(*args, train=train)

        x = x.astype(self.dtype)
        skips = [call(DoubleConv(widths[0], name="inc", **common), x)]
        for i in range(4):
            x = max_pool_2x2(skips[-1])
            skips.append(call(DoubleConv(widths[i + 1], name=f"down_{i}", **common), x))
        x = skips.pop()
        for i in range(4):
            skip = skips.pop()
            features = skip.shape[-1]
            if self.upsample == "bilinear" and i < 3:
                # milesial's Up(in, out // factor): the next level's input stays halved.
                features //= 2
            x = call(Up(features, upsample=self.upsample, name=f"up_{i}", **common), x, skip)
        x = Conv2d(
            self.num_classes,
            kernel_size=1,
            padding=0,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="outc",
        )(x)
        return x.astype(jnp.float32)
