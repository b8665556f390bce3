"""The train state and the one factory that builds it, for training, evaluation, prediction
and the benchmarks alike: config -> model -> optimizer -> initialised `TrainState`, and
`restore` of a finished run."""

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from jaxseg import checkpoint, convert, cpu_kernels, losses, models
from jaxseg.config import apply_overrides, saved_config
from jaxseg.data.labels import LabelSpace, get_label_space
from jaxseg.errors import ConfigError, DataError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax), plus BatchNorm statistics and a key."""

    batch_stats: Any
    rng: jax.Array  # Base key; step s uses fold_in(rng, s).


def num_outputs(config: ml_collections.ConfigDict, label_space: LabelSpace) -> int:
    """The model's output count: the label space's classes, plus void under `void: class`."""
    try:
        return losses.num_outputs(label_space.num_classes, config.data.void)
    except ValueError as e:
        raise ConfigError(f"data.void: {e}") from None


def build_model(
    config: ml_collections.ConfigDict, outputs: int, bn_axis_name: str | None = None
) -> nn.Module:
    """The config's model with `outputs` classes; `bn_axis_name` synchronises BatchNorm
    over a pmapped axis."""
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype {config.model.dtype!r}; valid: {', '.join(DTYPES)}")
    # Only models with a `remat` field take it; asking another for it is an error below.
    remat = {"remat": True} if config.model.remat else {}
    try:
        return models.get_model(
            config.model.name,
            num_classes=outputs,
            dtype=DTYPES[config.model.dtype],
            bn_axis_name=bn_axis_name,
            kernels=cpu_kernels.resolve(config.model.kernels),
            **remat,
            **config.model.options.to_dict(),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model {config.model.name!r}: {e}") from None


def check_input_size(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError unless the model takes `data.height` x `data.width` inputs and
    those of `data.progressive_sizes` (most need multiples of a power of two); traced
    abstractly, nothing is computed."""
    model = build_model(config, 2)
    data = config.data
    sizes = {f"data.height={data.height}, data.width={data.width}": (data.height, data.width)}
    for entry in data.progressive_sizes:
        sizes[f"data.progressive_sizes entry {list(entry)}"] = tuple(entry[1:])
    for name, (height, width) in sizes.items():
        shape = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
        try:
            jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), shape)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None


def create_learning_rate(config: ml_collections.ConfigDict, total_updates: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer update count."""
    opt = config.optimizer
    decay_steps = max(total_updates - opt.warmup_steps, 1)
    schedules = {
        "constant": optax.constant_schedule(opt.learning_rate),
        "cosine": optax.cosine_decay_schedule(opt.learning_rate, decay_steps),
        "poly": optax.polynomial_schedule(opt.learning_rate, 0.0, 0.9, decay_steps),
    }
    if opt.schedule not in schedules:
        raise ConfigError(f"optimizer.schedule {opt.schedule!r}; valid: {', '.join(schedules)}")
    if opt.warmup_steps == 0:
        return schedules[opt.schedule]
    warmup = optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
    return optax.join_schedules([warmup, schedules[opt.schedule]], [opt.warmup_steps])


def create_optimizer(
    config: ml_collections.ConfigDict,
    learning_rate: optax.Schedule,
    frozen: tuple[str, ...] = (),
) -> optax.GradientTransformation:
    """The config's optimizer; top-level parameter subtrees named in `frozen` never move.

    With `train.accumulate_steps` k > 1 it averages the gradients of k calls per update.
    """
    opt = config.optimizer
    accumulate = config.train.accumulate_steps
    if accumulate < 1:
        raise ConfigError(f"train.accumulate_steps={accumulate}; expected an integer >= 1")
    optimizers = {
        "adam": lambda: optax.adam(learning_rate),
        "adamw": lambda: optax.adamw(learning_rate, weight_decay=opt.weight_decay),
        "sgd": lambda: optax.sgd(learning_rate, momentum=0.9),
    }
    if opt.name not in optimizers:
        raise ConfigError(f"optimizer.name {opt.name!r}; valid: {', '.join(optimizers)}")
    tx = optimizers[opt.name]()
    if frozen:
        # Frozen subtrees get zero updates and no optimizer state (weight decay included).
        labels = functools.partial(_frozen_labels, frozen=frozen)
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
    return tx


def _frozen_labels(params: dict, frozen: tuple[str, ...]) -> dict:
    labels = {}
    for name, subtree in params.items():
        label = "frozen" if name in frozen else "trained"
        labels[name] = jax.tree.map(lambda _, label=label: label, subtree)
    return labels


def frozen_params(model: nn.Module) -> tuple[str, ...]:
    """Top-level parameter names the model keeps frozen (transfer learning)."""
    return model.frozen_params() if hasattr(model, "frozen_params") else ()


@dataclasses.dataclass(frozen=True)
class Created:
    """What `create` builds: the model, its initialised state and the learning rate."""

    model: nn.Module
    state: TrainState
    learning_rate: optax.Schedule


def create(
    config: ml_collections.ConfigDict,
    label_space: LabelSpace,
    *,
    image_shape: tuple[int, int, int, int],
    total_updates: int = 1,
    bn_axis_name: str | None = None,
    variables: dict | None = None,
) -> Created:
    """The one factory: the config's model, optimizer and a fresh train state.

    Args:
      config: a run's config.
      label_space: the data's label space (the model's output count follows from it).
      image_shape: [B, H, W, 3] of the inputs the parameters are initialised for.
      total_updates: optimizer updates of the whole run (the schedule's length).
      bn_axis_name: the pmapped axis BatchNorm synchronises over, if any.
      variables: {"params", "batch_stats"} to start from instead of a fresh
        initialisation (the state's key still comes from `config.seed`).
    """
    model = build_model(config, num_outputs(config, label_space), bn_axis_name)
    learning_rate = create_learning_rate(config, total_updates)
    tx = create_optimizer(config, learning_rate, frozen_params(model))
    _, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    if variables is None:
        # XLA's RngBitGenerator: with threefry (jax's default, the same bits on every
        # backend) XLA CPU compiled U-Net's initialisation in 8.5 s, with it in 2.2 s.
        # Its bits are fixed by the seed for a given backend and jaxlib.
        init_rng = jax.random.key(config.seed, impl="rbg")
        variables = jax.jit(functools.partial(model.init, train=False))(
            init_rng, jnp.zeros(image_shape, jnp.float32)
        )
    state = TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=state_rng,
    )
    return Created(model, state, learning_rate)


def with_pretrained(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """The state with the weights of `model.init_from` merged in (unchanged without one):
    converted weights, or a finished run's workdir (its best checkpoint's weights; the
    optimizer starts afresh, as fine-tuning does)."""
    init_from = config.model.init_from
    if init_from and (Path(init_from) / "config.json").is_file():
        run = restore(init_from)
        pretrained = {"params": run.state.params, "batch_stats": run.state.batch_stats}
    else:
        pretrained = convert.load_init_from(init_from, config.model.name)
    if pretrained is None:
        return state
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    variables = convert.merge_pretrained(variables, pretrained)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def checkpoint_tree(state: TrainState) -> dict:
    """What a checkpoint holds: everything but the functions."""
    return {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "step": state.step,
        "rng": state.rng,
    }


@dataclasses.dataclass(frozen=True)
class Restored:
    """A finished run: its config, label space, model and trained state."""

    config: ml_collections.ConfigDict
    label_space: LabelSpace
    model: nn.Module
    state: TrainState


def restore(workdir: str | Path, overrides: Sequence[str] = ()) -> Restored:
    """The config and trained state of a run: its best checkpoint, else its latest.

    Args:
      workdir: a run's folder.
      overrides: `key=value` strings applied to the saved config first (e.g. another
        `model.kernels` or `data.eval_batch_size`).
    """
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise DataError(f"{workdir}: not a jaxseg run (no config.json)")
    config = saved_config(config_path)
    apply_overrides(config, list(overrides))
    label_space = get_label_space(config.data.labels)
    image_shape = (1, config.data.height, config.data.width, 3)
    created = create(config, label_space, image_shape=image_shape)
    template = checkpoint_tree(created.state)
    checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
    try:
        restored = checkpoints.restore(template, which="best") or checkpoints.restore(template)
    finally:
        checkpoints.close()
    if restored is None:
        raise DataError(f"{workdir / 'checkpoints'}: no checkpoint to load")
    return Restored(config, label_space, created.model, created.state.replace(**restored[0]))
