"""ResNet v1.5 backbone with torchvision semantics.

Submodules are named after torchvision's state-dict keys with every numeric index joined to
the name before it by ``_``: ``layer3.4.conv2.weight`` lives at
``params["layer3_4"]["conv2"]["kernel"]`` and ``layer1.0.downsample.1.running_mean`` at
``batch_stats["layer1_0"]["downsample_1"]["mean"]``, so ``jaxseg.convert`` maps weights by rule.
"""

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg import cpu_kernels
from jaxseg.models.layers import BatchNorm, Conv2d

Dtype = Any

# torchvision initialises ResNet convolutions with kaiming_normal_(mode="fan_out", relu).
_kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck``: 1x1 -> 3x3 (stride, dilation) -> 1x1 (x4 channels) + skip.

    ResNet v1.5 puts the stride on the 3x3 convolution, not on the first 1x1.
    """

    features: int  # torchvision's `planes`; the block outputs 4 * features channels.
    stride: int = 1  # Stride of the 3x3 conv and of the downsample projection.
    dilation: int = 1  # Dilation (and padding) of the 3x3 conv.
    dtype: Dtype | None = None  # Compute dtype; None keeps the input's.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis to average BN statistics over (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies the block.

        Args:
          x: [B, H, W, C] input.
          train: use batch statistics (and update the running ones) in BatchNorm.

        Returns:
          [B, ceil(H / stride), ceil(W / stride), 4 * features].
        """
        conv = partial(
            Conv2d,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=_kaiming_fan_out,
            kernels=self.kernels,
        )
        norm = partial(
            BatchNorm,
            use_running_average=not train,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
        )
        out_features = 4 * self.features

        y = conv(self.features, kernel_size=1, padding=0, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(
            self.features,
            kernel_size=3,
            stride=self.stride,
            padding=self.dilation,
            dilation=self.dilation,
            name="conv2",
        )(y)
        y = nn.relu(norm(name="bn2")(y))
        y = conv(out_features, kernel_size=1, padding=0, name="conv3")(y)
        y = norm(name="bn3")(y)

        # torchvision adds the projection exactly when the shape changes.
        if self.stride != 1 or x.shape[-1] != out_features:
            x = conv(
                out_features, kernel_size=1, stride=self.stride, padding=0, name="downsample_0"
            )(x)
            x = norm(name="downsample_1")(x)
        out = nn.relu(y + x)
        # The residual stream, computed once (see `cpu_kernels.materialize`).
        return cpu_kernels.materialize(out) if self.kernels == "cpu" else out


class ResNet(nn.Module):
    """torchvision ``ResNet`` (Bottleneck blocks) without the classifier, as a feature extractor.

    ``replace_stride_with_dilation`` follows torchvision's ``_make_layer``: a dilated stage
    keeps stride 1, multiplies the running dilation by the stride it replaced, and gives its
    first block the dilation of the previous stage.
    """

    stage_sizes: Sequence[int]  # Bottleneck blocks per stage, e.g. (3, 4, 23, 3).
    num_filters: int = 64  # Stem width; stage i uses num_filters * 2**i planes.
    replace_stride_with_dilation: Sequence[bool] = (False, False, False)  # For layer2..layer4.
    dtype: Dtype | None = None  # Compute dtype; None keeps the input's.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis to average BN statistics over (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """Computes the features of the last two stages.

        Args:
          x: [B, H, W, 3] float image.
          train: use batch statistics (and update the running ones) in BatchNorm.

        Returns:
          (layer3, layer4): [B, H/16, W/16, 16 * num_filters] and
          [B, H/32, W/32, 32 * num_filters] (spatial sizes rounded up per strided layer; /8 for
          both when the strides of layer3 and layer4 are replaced by dilation).
        """
        x = Conv2d(
            self.num_filters,
            kernel_size=7,
            stride=2,
            padding=3,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=_kaiming_fan_out,
            kernels=self.kernels,
            name="conv1",
        )(x)
        x = BatchNorm(
            use_running_average=not train, dtype=self.dtype, axis_name=self.bn_axis_name, name="bn1"
        )(x)
        x = nn.relu(x)
        # Flax pads max_pool with -inf, as torch's MaxPool2d(3, 2, padding=1) does. The
        # window is a keyword: jax2onnx's ONNX export patches max_pool with that signature.
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

        dilation = 1
        stages = []
        for i, num_blocks in enumerate(self.stage_sizes):
            stride = 1 if i == 0 else 2
            previous_dilation = dilation
            if i > 0 and self.replace_stride_with_dilation[i - 1]:
                dilation *= stride
                stride = 1
            for j in range(num_blocks):
                x = Bottleneck(
                    self.num_filters * 2**i,
                    stride=stride if j == 0 else 1,
                    dilation=previous_dilation if j == 0 else dilation,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    bn_axis_name=self.bn_axis_name,
                    kernels=self.kernels,
                    name=f"layer{i + 1}_{j}",
                )(x, train=train)
            stages.append(x)
        return stages[2], stages[3]


resnet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3))
resnet101 = partial(ResNet, stage_sizes=(3, 4, 23, 3))
# One block per stage and 8 stem channels: same structure, seconds to compile, for tests.
resnet_tiny = partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=8)
