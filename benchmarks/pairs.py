"""The compared models: a jaxseg model and its PyTorch twin holding the same weights.

FCN, RRCNN ("custom") and U-Net come from ``benchmarks.torch_models`` and are copied into
Flax by ``copy_torch_to_flax``; DeepLabV3 is torchvision's ``deeplabv3_resnet{50,101}``
converted by ``jaxseg.convert`` — both paths are parity-tested (tests/test_models.py,
tests/test_deeplabv3.py), so both frameworks do the same work from the same weights.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as F
import torchvision

from benchmarks import torch_models
from jaxseg import config, convert, cpu_kernels, losses, models, state, steps
from jaxseg.data.labels import IDD_LEVEL3

LABEL_SPACE = IDD_LEVEL3
NUM_CLASSES = LABEL_SPACE.num_classes
LEARNING_RATE = 1e-4
AUX_WEIGHT = 0.5  # The transfer experiment's.
TORCH_CLASSES = {"fcn": "FCN", "custom": "RRCNNFCN", "unet": "UNet"}
# Each model as its experiment trains it, except the RRCNN at the full depth of 5 (the study
# cut it to 2 to fit 11 GB); DeepLabV3 is the transfer experiment: frozen backbone.
DEFAULT_OPTIONS = {
    "fcn": {},
    "custom": {"depth": 5},
    "unet": {"base_width": 64, "upsample": "transpose"},
    "deeplabv3_resnet50": {"aux_loss": True, "freeze_backbone": True},
    "deeplabv3_resnet101": {"aux_loss": True, "freeze_backbone": True},
}
JAX_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


@dataclasses.dataclass
class Pair:
    """A jaxseg model, its variables, and the torch module they were copied from."""

    name: str
    flax_model: nn.Module
    variables: dict  # {"params", "batch_stats"} of jax arrays.
    torch_model: torch.nn.Module
    options: dict

    def describe(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}({options})" if options else self.name


def build_pair(
    name: str, options: dict | None = None, *, dtype: str = "fp32", seed: int = 0
) -> Pair:
    """The jaxseg and torch versions of model `name` with the same random weights.

    The jaxseg model uses the convolution kernels ``cpu_kernels.resolve("auto")`` picks for
    this backend.

    Args:
      name: a key of ``DEFAULT_OPTIONS``.
      options: model fields replacing the defaults (e.g. ``{"base_width": 4}``).
      dtype: jaxseg compute dtype, "fp32" or "bf16" (parameters stay float32).
      seed: torch seed of the weights.
    """
    if name not in DEFAULT_OPTIONS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(DEFAULT_OPTIONS)}")
    options = {**DEFAULT_OPTIONS[name], **(options or {})}
    torch.manual_seed(seed)
    if name.startswith("deeplabv3"):
        build = getattr(torchvision.models.segmentation, name)
        module = build(
            weights=None,
            weights_backbone=None,
            num_classes=NUM_CLASSES,
            aux_loss=options.get("aux_loss", True),
        )
        state_dict = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        variables = convert.convert_state_dict(state_dict, name)
    else:
        module = getattr(torch_models, TORCH_CLASSES[name])(NUM_CLASSES, **options)
        variables = torch_models.copy_torch_to_flax(module)
    flax_model = models.get_model(
        name,
        num_classes=NUM_CLASSES,
        dtype=JAX_DTYPES[dtype],
        kernels=cpu_kernels.resolve("auto"),
        **options,
    )
    return Pair(name, flax_model, jax.tree.map(jnp.asarray, variables), module, options)


def jax_train_state(pair: Pair) -> state.TrainState:
    """An Adam train state over the pair's weights, built by jaxseg's state factory (frozen
    parts as in training)."""
    run_config = config.defaults()
    run_config.model.name = pair.name
    run_config.model.options.update(pair.options)
    run_config.data.void = "ignore"
    run_config.optimizer.learning_rate = LEARNING_RATE
    created = state.create(
        run_config, LABEL_SPACE, image_shape=(1, 32, 32, 3), variables=pair.variables
    )
    return created.state


# jaxseg's training loss: cross-entropy, void ignored, aux head weighted.
jax_loss_terms = functools.partial(
    steps.loss_terms,
    num_classes=NUM_CLASSES,
    void="ignore",
    class_weights=None,
    aux_weight=AUX_WEIGHT,
)


def jax_loss_fn(outputs, labels: jax.Array) -> jax.Array:
    """The mean of `jax_loss_terms`: the loss `jax_train_state`'s step minimises."""
    return steps.mean_loss(jax_loss_terms(outputs, labels))


def torch_loss(outputs, labels: torch.Tensor) -> torch.Tensor:
    """`jax_loss_fn` in torch."""
    if not isinstance(outputs, dict):
        return F.cross_entropy(outputs, labels, ignore_index=losses.VOID)
    loss = F.cross_entropy(outputs["out"], labels, ignore_index=losses.VOID)
    if "aux" in outputs:
        loss = loss + AUX_WEIGHT * F.cross_entropy(outputs["aux"], labels, ignore_index=losses.VOID)
    return loss


def torch_train_mode(pair: Pair) -> None:
    """Train mode; a frozen DeepLabV3 backbone keeps running statistics and no gradients,
    as `DeepLabV3(freeze_backbone=True)` does."""
    module = pair.torch_model
    module.train()
    if pair.options.get("freeze_backbone"):
        module.backbone.eval()
        module.backbone.requires_grad_(False)


def torch_parameters(pair: Pair) -> list[torch.nn.Parameter]:
    return [p for p in pair.torch_model.parameters() if p.requires_grad]


def torch_logits(outputs) -> torch.Tensor:
    return outputs["out"] if isinstance(outputs, dict) else outputs


def jax_logits(outputs) -> jax.Array:
    return outputs["out"] if isinstance(outputs, dict) else outputs
