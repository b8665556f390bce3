"""Segmentation models and their registry.

Every model maps ``(x [B, H, W, C], *, train: bool)`` to float32 logits
``[B, H, W, num_classes]`` (DeepLabV3, like torchvision, to ``{"out": logits, "aux": logits}``);
BatchNorm uses running averages when ``train`` is False. Every model has a ``kernels`` field,
"xla" (default) or "cpu", naming its convolution formulations (``jaxseg.models.layers``).
"""

from collections.abc import Callable

import flax.linen as nn

from jaxseg.models import deeplabv3
from jaxseg.models.fcn import FCN
from jaxseg.models.rrcnn import RRCNNFCN
from jaxseg.models.unet import UNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn": FCN,
    "unet": UNet,
    "custom": RRCNNFCN,
    "deeplabv3_resnet50": deeplabv3.deeplabv3_resnet50,
    "deeplabv3_resnet101": deeplabv3.deeplabv3_resnet101,
    "deeplabv3_tiny": deeplabv3.deeplabv3_tiny,
}


def get_model(name: str, **kwargs) -> nn.Module:
    """Builds a registered model.

    Args:
      name: a key of ``MODELS``.
      **kwargs: the model's fields, e.g. ``num_classes=26, dtype=jnp.bfloat16,
        kernels=jaxseg.cpu_kernels.resolve("auto")``.

    Raises:
      ValueError: if ``name`` is not registered.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
