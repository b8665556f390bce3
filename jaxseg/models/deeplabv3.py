"""DeepLabV3 as torchvision's ``deeplabv3_resnet{50,101}``.

Submodule names follow torchvision's state-dict keys with numeric indices joined by ``_``
(``classifier.0.convs.1.0.weight`` -> ``params["classifier_0"]["convs_1_0"]["kernel"]``), so the
layers of torchvision's ``nn.Sequential`` heads appear here by index: ``classifier_0`` is the
ASPP, ``classifier_1``/``_2`` the 3x3 conv and its BN, ``classifier_4`` the class conv (index 3
is the ReLU); ``aux_classifier_0``/``_1``/``_4`` likewise for the FCN auxiliary head.
"""

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models.layers import BatchNorm, Conv2d, resize_bilinear
from jaxseg.models.resnet import ResNet

Dtype = Any


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of torchvision's ``DeepLabHead`` (its layer 0).

    Branches ``convs_0`` (1x1), ``convs_1..3`` (3x3 at the atrous rates) and ``convs_4``
    (image pooling; its index 0 is the average pool, so its conv/BN are ``convs_4_1/_2``) are
    concatenated and projected (``project_0/_1``) to ``features`` channels.
    """

    features: int = 256  # Channels of every branch and of the projection.
    atrous_rates: Sequence[int] = (12, 24, 36)  # Dilation of the three 3x3 branches.
    dropout_rate: float = 0.5  # Dropout after the projection (train mode only).
    dtype: Dtype | None = None  # Compute dtype; None keeps the input's.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis to average BN statistics over (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies ASPP.

        Args:
          x: [B, h, w, C] backbone features.
          train: batch statistics in BatchNorm and active dropout (needs the "dropout" rng).

        Returns:
          [B, h, w, features].
        """
        conv = partial(
            Conv2d,
            self.features,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
        )
        norm = partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype, axis_name=self.bn_axis_name
        )

        branches = [
            nn.relu(norm(name="convs_0_1")(conv(kernel_size=1, padding=0, name="convs_0_0")(x)))
        ]
        for i, rate in enumerate(self.atrous_rates, start=1):
            y = conv(kernel_size=3, padding=rate, dilation=rate, name=f"convs_{i}_0")(x)
            branches.append(nn.relu(norm(name=f"convs_{i}_1")(y)))

        i = len(self.atrous_rates) + 1
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
        pooled = conv(kernel_size=1, padding=0, name=f"convs_{i}_1")(pooled)
        pooled = nn.relu(norm(name=f"convs_{i}_2")(pooled))
        # torch upsamples the 1x1 map bilinearly (align_corners=False), which is a broadcast.
        branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))

        y = conv(kernel_size=1, padding=0, name="project_0")(jnp.concatenate(branches, axis=-1))
        y = nn.relu(norm(name="project_1")(y))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class DeepLabV3(nn.Module):
    """torchvision ``DeepLabV3`` with a ResNet backbone at output stride 8.

    Parameters and BatchNorm statistics stay float32; ``dtype`` sets the compute dtype (e.g.
    bfloat16). Logits are returned in float32 at the input resolution.
    """

    num_classes: int = 21  # Output classes (21 for the COCO-with-VOC-labels checkpoint).
    stage_sizes: Sequence[int] = (3, 4, 23, 3)  # Backbone depth: ResNet-101 by default.
    num_filters: int = 64  # Backbone stem width (the tiny test variant shrinks it).
    aux_loss: bool = True  # Also return the auxiliary FCN head's logits on layer3 as "aux".
    atrous_rates: Sequence[int] = (12, 24, 36)  # ASPP dilation rates.
    head_features: int = 256  # Channels of ASPP and of the 3x3 head conv.
    dropout_rate: float = 0.5  # ASPP projection dropout (torchvision: 0.5).
    aux_dropout_rate: float = 0.1  # Auxiliary head dropout (torchvision: 0.1).
    dtype: Dtype | None = None  # Compute dtype; None keeps the input's.
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None  # Mapped axis to average BN statistics over (pmap).
    kernels: str = "xla"  # Convolution formulations, "xla" or "cpu" (models.layers).
    # Transfer learning: a frozen part runs in eval mode (running BN statistics, neither
    # used from the batch nor updated) and passes no gradient back, so its backward pass
    # is never computed. The optimizer leaves its parameters alone (`frozen_params`).
    freeze_backbone: bool = False
    freeze_aspp: bool = False

    def frozen_params(self) -> tuple[str, ...]:
        """Top-level parameter names that training must not update."""
        return ("backbone",) * self.freeze_backbone + ("classifier_0",) * self.freeze_aspp

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Segments a batch of images.

        Args:
          x: [B, H, W, 3] float image (any H, W).
          train: batch statistics in BatchNorm (running ones updated: pass
            ``mutable=["batch_stats"]``) and active dropout (needs the "dropout" rng).

        Returns:
          {"out": [B, H, W, num_classes] float32} plus "aux" (same shape) when ``aux_loss``.
        """
        size = x.shape[1:3]
        conv = partial(Conv2d, dtype=self.dtype, param_dtype=self.param_dtype, kernels=self.kernels)
        norm = partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype, axis_name=self.bn_axis_name
        )

        layer3, layer4 = ResNet(
            self.stage_sizes,
            num_filters=self.num_filters,
            replace_stride_with_dilation=(False, True, True),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            kernels=self.kernels,
            name="backbone",
        )(x, train=train and not self.freeze_backbone)
        if self.freeze_backbone:
            layer3, layer4 = jax.lax.stop_gradient((layer3, layer4))

        y = ASPP(
            self.head_features,
            atrous_rates=self.atrous_rates,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            kernels=self.kernels,
            name="classifier_0",
        )(layer4, train=train and not self.freeze_aspp)
        if self.freeze_aspp:
            y = jax.lax.stop_gradient(y)
        y = conv(self.head_features, 3, padding=1, use_bias=False, name="classifier_1")(y)
        y = nn.relu(norm(name="classifier_2")(y))
        y = conv(self.num_classes, kernel_size=1, padding=0, name="classifier_4")(y)
        result = {"out": resize_bilinear(y.astype(jnp.float32), size)}

        if self.aux_loss:
            # torchvision's FCNHead narrows to a quarter of its input channels (1024 -> 256).
            a = conv(
                layer3.shape[-1] // 4,
                kernel_size=3,
                padding=1,
                use_bias=False,
                name="aux_classifier_0",
            )(layer3)
            a = nn.relu(norm(name="aux_classifier_1")(a))
            a = nn.Dropout(self.aux_dropout_rate, deterministic=not train)(a)
            a = conv(self.num_classes, kernel_size=1, padding=0, name="aux_classifier_4")(a)
            result["aux"] = resize_bilinear(a.astype(jnp.float32), size)
        return result


deeplabv3_resnet50 = partial(DeepLabV3, stage_sizes=(3, 4, 6, 3))
deeplabv3_resnet101 = partial(DeepLabV3, stage_sizes=(3, 4, 23, 3))
# Same structure with a one-block-per-stage, 8-channel backbone and 16-channel heads: for tests.
deeplabv3_tiny = partial(DeepLabV3, stage_sizes=(1, 1, 1, 1), num_filters=8, head_features=16)
