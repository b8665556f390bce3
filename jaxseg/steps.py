"""The pure steps: the loss, `train_step`, `eval_step` and eval-mode logits.

Each step is a pure function of (state, batch) with its static settings bound by
`functools.partial` (`bind`), compiled once by `jaxseg.parallel` (jit or pmap). Batches
follow one contract: {"image": uint8 [B, H, W, 3], "label": int32 [B, H, W]} with train
ids and 255 = void; evaluation adds "mask" [B] bool (False for padding examples). Images are
normalised on the device (`model_input`).
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg import losses, metrics, parallel, segment
from jaxseg.data import transforms
from jaxseg.state import TrainState

# (outputs, labels, mask=None) -> (loss sum, weight sum): both add over batches, and
# loss = sum / weight.
LossTerms = Callable[..., tuple[jax.Array, jax.Array]]

DEFAULT_OPTIONS = segment.Options()


def model_input(images: jax.Array) -> jax.Array:
    """uint8 RGB images [B, H, W, 3] -> float32 normalised with ImageNet's mean and std, as
    the study did; float images are taken as normalised already."""
    if images.dtype != jnp.uint8:
        return images
    mean = jnp.asarray(transforms.IMAGENET_MEAN)
    std = jnp.asarray(transforms.IMAGENET_STD)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def split_outputs(outputs) -> dict:
    """Models return logits, or torchvision-style {"out": logits, "aux": logits}."""
    return outputs if isinstance(outputs, dict) else {"out": outputs}


def loss_terms(
    outputs,
    labels: jax.Array,
    *,
    num_classes: int,
    void: str,
    class_weights: jax.Array | None,
    aux_weight: float,
    mask: jax.Array | None = None,
    terms: tuple[losses.Term, ...] = losses.DEFAULT_TERMS,
) -> tuple[jax.Array, jax.Array]:
    """The segmentation loss as (sum, weight), the one entry point of training and
    validation: the weighted loss terms (`loss.terms`, by default the class-weighted
    cross-entropy alone) of the main output, plus `aux_weight` times those of the
    auxiliary output when the model has one.

    Args:
      outputs: logits [B, H, W, K] or {"out": ..., "aux": ...} at the labels' size.
      labels: [B, H, W] int train ids, 255 = void.
      num_classes: classes of the label space (the void class id under `void: class`).
      void: the void policy ("ignore" or "class").
      class_weights: [K] or None.
      aux_weight: weight of the auxiliary head's loss.
      mask: [B, H, W] bool, False where pixels carry no loss at all (padding examples).
      terms: the loss terms (`losses.parse_terms`); see `losses.combined_terms` for how
        they share one denominator.
    """
    outputs = split_outputs(outputs)
    labels = losses.apply_void_policy(labels, void, num_classes)
    if mask is not None:
        labels = jnp.where(mask, labels, losses.VOID)
    total, weight = losses.combined_terms(outputs["out"], labels, terms, class_weights)
    if "aux" in outputs:
        # Same labels, same weights: the aux terms share the main terms' denominator.
        aux_total, _ = losses.combined_terms(outputs["aux"], labels, terms, class_weights)
        total = total + aux_weight * aux_total
    return total, weight


def mean_loss(terms: tuple[jax.Array, jax.Array]) -> jax.Array:
    """sum / weight of `loss_terms`; 0, not NaN, when no pixel carries a loss."""
    total, weight = terms
    return total / jnp.maximum(weight, 1e-12)


def train_step(
    state: TrainState, batch: dict, *, loss_fn: LossTerms, axis_name: str | None = None
) -> tuple[TrainState, dict]:
    """One optimizer step on `batch`.

    A non-finite loss or gradient leaves the parameters, optimizer and BatchNorm state as
    they were (only the step counter advances) and reports `finite` False, so a bad batch
    never makes a NaN model; the loop applies `train.on_nan`. With `axis_name` (pmap)
    gradients, statistics and metrics are averaged over that axis; under jit with sharded
    batches XLA already works on the global batch.
    """
    dropout_rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(params):
        outputs, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            model_input(batch["image"]),
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        return mean_loss(loss_fn(outputs, batch["label"])), updates

    (loss, updates), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    if axis_name is not None:
        grads, loss = jax.lax.pmean((grads, loss), axis_name)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updated = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old), updated, state.replace(step=updated.step)
    )
    return state, {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def eval_forward(apply_fn: Callable, variables: dict) -> segment.Forward:
    """A model (`apply_fn` with {"params", "batch_stats"}) in eval mode: normalised
    images -> float32 logits."""

    def forward(images: jax.Array) -> jax.Array:
        outputs = apply_fn(variables, images, train=False)
        return split_outputs(outputs)["out"].astype(jnp.float32)

    return forward


def eval_variables(state: TrainState) -> dict:
    """What the model needs of `state` in eval mode."""
    return {"params": state.params, "batch_stats": state.batch_stats}


def predict_log_probabilities(
    state: TrainState, images: jax.Array, size: tuple[int, int], options: segment.Options
) -> jax.Array:
    """Log class probabilities [B, *size, K] of uint8 images under an evaluation mode
    (`jaxseg.segment`)."""
    forward = eval_forward(state.apply_fn, eval_variables(state))
    return segment.log_probabilities(forward, model_input(images), size, options)


def eval_step(
    state: TrainState,
    batch: dict,
    *,
    loss_fn: LossTerms,
    num_classes: int,
    options: segment.Options = DEFAULT_OPTIONS,
    axis_name: str | None = None,
) -> dict:
    """Loss terms and the confusion matrix of one batch, at the labels' resolution, under
    the evaluation mode `options`.

    Returns {"loss_sum", "weight_sum", "confusion" [K, K + 1]}, all of which add over
    batches (and, with `axis_name` (pmap), are summed over that axis).
    """
    log_p = predict_log_probabilities(state, batch["image"], batch["label"].shape[1:], options)
    mask = jnp.broadcast_to(batch["mask"][:, None, None], batch["label"].shape)
    # Log-probabilities as logits: every loss term is invariant to log_softmax.
    loss_sum, weight_sum = loss_fn({"out": log_p}, batch["label"], mask=mask)
    predictions = jnp.argmax(log_p, axis=-1)
    sums = {
        "loss_sum": loss_sum,
        "weight_sum": weight_sum,
        "confusion": metrics.confusion_matrix(batch["label"], predictions, num_classes, mask),
    }
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)


@dataclasses.dataclass(frozen=True)
class Steps:
    """The compiled steps of a run."""

    train: Callable[[TrainState, dict], tuple[TrainState, dict]]
    eval: Callable[[TrainState, dict], dict]


def bind_loss(
    config: ml_collections.ConfigDict, num_classes: int, class_weights: jax.Array | None
) -> LossTerms:
    """`loss_terms` with the config's settings bound.

    Raises:
      ConfigError: a bad `loss.terms` entry.
    """
    return functools.partial(
        loss_terms,
        num_classes=num_classes,
        void=config.data.void,
        class_weights=class_weights,
        aux_weight=config.loss.aux_weight,
        terms=losses.parse_terms(config.loss.terms),
    )


def compile_steps(
    config: ml_collections.ConfigDict,
    strategy: parallel.DataParallel,
    num_classes: int,
    class_weights: jax.Array | None,
    state: TrainState,
) -> Steps:
    """`train_step` and `eval_step` with their static settings bound (the evaluation mode
    of `config.eval` included), each compiled (jit or pmap, as `strategy` says) for the
    placed `state`; jit compiles the eval step once per input shape."""
    loss_fn = bind_loss(config, num_classes, class_weights)
    train, evaluate = strategy.compile(
        functools.partial(train_step, loss_fn=loss_fn),
        functools.partial(
            eval_step, loss_fn=loss_fn, num_classes=num_classes, options=segment.options(config)
        ),
        state,
    )
    return Steps(train, evaluate)
