"""Training and evaluation: pure jitted steps and the loop around them.

`python -m jaxseg.train --experiment NAME [--data synthetic|PATH] [--workdir DIR]
[--set key=value ...]` trains, evaluates and writes config.json, metrics.jsonl,
checkpoints/, results.json and report/ into the workdir; running it again resumes.
On several hosts, every host runs the same command with `--coordinator HOST:PORT
--num-processes N --process-id I` (see `main`).
"""

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from jaxseg import (
    checkpoint,
    class_weights,
    cli,
    convert,
    losses,
    metrics,
    models,
    parallel,
    progress,
    report,
)
from jaxseg.classes import NUM_CLASSES, VOID
from jaxseg.config import config_to_json, load_config, saved_config
from jaxseg.data import augment, pipeline, sources, stats, synthetic, transforms
from jaxseg.errors import ConfigError, DataError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax), plus BatchNorm statistics and a key."""

    batch_stats: Any
    rng: jax.Array  # Base key; step s uses fold_in(rng, s).


def build_model(config: ml_collections.ConfigDict, bn_axis_name: str | None = None) -> nn.Module:
    """The config's model; `bn_axis_name` synchronises BatchNorm over a pmapped axis."""
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype {config.model.dtype!r}; valid: {', '.join(DTYPES)}")
    try:
        return models.get_model(
            config.model.name,
            num_classes=losses.num_outputs(NUM_CLASSES, config.data.void),
            dtype=DTYPES[config.model.dtype],
            bn_axis_name=bn_axis_name,
            **config.model.options.to_dict(),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model {config.model.name!r}: {e}") from None


def create_learning_rate(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer update count (`total_steps` updates)."""
    opt = config.optimizer
    decay_steps = max(total_steps - opt.warmup_steps, 1)
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


def load_init_from(config: ml_collections.ConfigDict) -> dict | None:
    """Variables of `model.init_from`: a `jaxseg.convert` output folder, or
    "random_torchvision" for a converted randomly initialised torchvision model."""
    init_from = config.model.init_from
    if not init_from:
        return None
    if init_from == "random_torchvision":
        arch = config.model.name
        if arch not in convert.ARCHS:
            raise ConfigError(f"model.init_from=random_torchvision: no torchvision {arch!r}")
        init_from = convert.random_torchvision_weights(
            arch, synthetic.default_cache_dir() / f"random-torchvision-{arch}"
        )
    if not (Path(init_from) / "jaxseg_convert.json").is_file():
        raise DataError(f"{init_from}: not a folder written by `python -m jaxseg.convert`")
    return convert.load_converted(init_from)


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, image_shape: tuple
) -> TrainState:
    """Initialises parameters from `rng` for inputs of `image_shape` [B, H, W, 3]."""
    init_rng, state_rng = jax.random.split(rng)
    variables = jax.jit(functools.partial(model.init, train=False))(
        init_rng, jnp.zeros(image_shape, jnp.float32)
    )
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=state_rng,
    )


def _split_outputs(outputs) -> dict:
    """Models return logits, or torchvision-style {"out": logits, "aux": logits}."""
    return outputs if isinstance(outputs, dict) else {"out": outputs}


def segmentation_loss(
    outputs, labels: jax.Array, *, class_weights: jax.Array | None, void: str, aux_weight: float
) -> jax.Array:
    outputs = _split_outputs(outputs)
    labels = losses.apply_void_policy(labels, void)
    loss = losses.weighted_cross_entropy(outputs["out"], labels, class_weights)
    if "aux" in outputs:
        loss += aux_weight * losses.weighted_cross_entropy(outputs["aux"], labels, class_weights)
    return loss


def train_step(
    state: TrainState, batch: dict, *, loss_fn, axis_name: str | None = None
) -> tuple[TrainState, dict]:
    """One optimizer step on `batch` {"image": [B,H,W,3] f32, "label": [B,H,W] i32}.

    With `axis_name` (pmap) gradients, statistics and metrics are averaged over that axis;
    under jit with sharded batches XLA already works on the global batch.
    """
    dropout_rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(params):
        outputs, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        return loss_fn(outputs, batch["label"]), updates

    (loss, updates), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    if axis_name is not None:
        grads, loss = jax.lax.pmean((grads, loss), axis_name)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    return state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def predict_logits(state: TrainState, images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Eval-mode logits [B, *size, K] float32, bilinearly resized to `size` if needed."""
    outputs = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
    )
    logits = _split_outputs(outputs)["out"].astype(jnp.float32)
    if logits.shape[1:3] != tuple(size):
        shape = (logits.shape[0], *size, logits.shape[-1])
        logits = jax.image.resize(logits, shape, "bilinear", antialias=False)
    return logits


def eval_step(
    state: TrainState,
    batch: dict,
    *,
    class_weights: jax.Array | None,
    void: str,
    axis_name: str | None = None,
) -> dict:
    """Loss terms and the confusion matrix of one batch; `batch["mask"]` [B] marks padding.

    Returns {"loss_sum", "weight_sum", "confusion" [26, 27]}, all of which add over batches
    (and, with `axis_name` (pmap), are summed over that axis).
    """
    logits = predict_logits(state, batch["image"], batch["label"].shape[1:])
    mask = jnp.broadcast_to(batch["mask"][:, None, None], batch["label"].shape)
    labels = losses.apply_void_policy(batch["label"], void)
    labels = jnp.where(mask, labels, losses.VOID)
    loss_sum, weight_sum = losses.cross_entropy_terms(logits, labels, class_weights)
    predictions = jnp.argmax(logits, axis=-1)
    sums = {
        "loss_sum": loss_sum,
        "weight_sum": weight_sum,
        "confusion": metrics.confusion_matrix(batch["label"], predictions, mask),
    }
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def evaluate(
    compiled_eval_step, state: TrainState, batches, strategy: parallel.DataParallel
) -> dict:
    """Runs `compiled_eval_step` over every batch (this process's part of each global batch);
    metrics from the confusion matrix summed over batches and devices."""
    totals = None
    for batch in batches:
        batch.pop("name", None)
        out = compiled_eval_step(state, strategy.place_batch(batch))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = strategy.fetch(totals)
    result = metrics.metrics_from_confusion(totals["confusion"])
    result["loss"] = float(totals["loss_sum"] / max(float(totals["weight_sum"]), 1e-12))
    return result


def resolve_data(config: ml_collections.ConfigDict) -> Path:
    """The dataset root; the synthetic data is generated into a cache on first use."""
    if config.data.source == "synthetic":
        return synthetic.ensure_synthetic(config.synthetic.to_dict())
    root = Path(config.data.source)
    if not root.exists():
        raise DataError(f"{root}: no such data folder")
    return root


def class_weights_for(
    config: ml_collections.ConfigDict,
    workdir: Path,
    train_source: sources.ExampleSource | None = None,
) -> jax.Array | None:
    """Per-output loss weights of the config's scheme and pixel counts (None: uniform).

    `loss.class_counts: train` counts the training split's pixels once and keeps them in
    the workdir's `class_counts.json`, which later runs and `evaluate` reuse.
    """
    if config.loss.class_weights == "none":
        return None
    counts_source = config.loss.class_counts
    if counts_source == "train":
        cached = workdir / "class_counts.json"
        if not cached.exists():
            if train_source is None:
                raise DataError(f"{cached}: missing (made by jaxseg.train on first use)")
            logging.info("counting class pixels of the training split for the class weights")
            counts = stats.pixel_counts(train_source)
            if progress.is_main_process():
                cached.write_text(json.dumps([int(c) for c in counts]) + "\n")
        counts_source = str(cached)
    weights = class_weights.class_weights(
        config.loss.class_weights,
        class_weights.load_counts(counts_source),
        losses.num_outputs(NUM_CLASSES, config.data.void),
    )
    return jnp.asarray(weights, jnp.float32)


class EarlyStopping:
    """Stops when the validation loss has not improved for `patience` evaluations."""

    def __init__(self, patience: int, best_loss: float = math.inf, bad_epochs: int = 0):
        self.patience = patience
        self.best_loss = best_loss
        self.bad_epochs = bad_epochs

    def update(self, val_loss: float) -> bool:
        """Records a validation loss; True when training should stop."""
        if val_loss < self.best_loss:
            self.best_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "bad_epochs": self.bad_epochs}


def _eval_record(prefix: str, result: dict) -> dict:
    return {
        f"{prefix}_loss": result["loss"],
        f"{prefix}_pixel_accuracy": result["pixel_accuracy"],
        f"{prefix}_mean_iou": result["mean_iou"],
        f"{prefix}_iou": result["iou"],
    }


def _state_tree(state: TrainState) -> dict:
    """What a checkpoint holds: everything but the functions."""
    return {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "step": state.step,
        "rng": state.rng,
    }


def load_trained(workdir: str | Path) -> tuple[ml_collections.ConfigDict, TrainState]:
    """The config and trained state of a run: its best checkpoint, else its latest."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise DataError(f"{workdir}: not a jaxseg run (no config.json)")
    config = saved_config(config_path)
    model = build_model(config)
    state = create_train_state(
        model,
        create_optimizer(config, create_learning_rate(config, 1), frozen_params(model)),
        jax.random.PRNGKey(config.seed),
        (1, config.data.height, config.data.width, 3),
    )
    checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
    restored = checkpoints.restore(_state_tree(state), which="best") or checkpoints.restore(
        _state_tree(state)
    )
    checkpoints.close()
    if restored is None:
        raise DataError(f"{workdir / 'checkpoints'}: no checkpoint to load")
    return config, state.replace(**restored[0])


def predict_ids(state: TrainState, config: ml_collections.ConfigDict, image: np.ndarray):
    """Level-3 ids [H, W] uint8 of one [H, W, 3] uint8 image, at the image's own size.

    The image is resized to the model's input size; logits are resized back bilinearly.
    A prediction of the void class (under `void: class`) is written as 255.
    """
    resized = transforms.resize(
        {"image": image, "label": np.zeros(image.shape[:2], np.uint8)},
        config.data.height,
        config.data.width,
    )["image"]
    logits = _jitted_predict_logits(state, transforms.normalize(resized)[None], image.shape[:2])
    ids = np.asarray(jnp.argmax(logits[0], axis=-1))
    return np.where(ids >= NUM_CLASSES, VOID, ids).astype(np.uint8)


_jitted_predict_logits = jax.jit(predict_logits, static_argnums=2)


def write_report(
    workdir: Path, config: ml_collections.ConfigDict, state: TrainState, root: Path
) -> None:
    """report/: the curves of metrics.jsonl, the first test image's overlay, report.md."""
    out_dir = workdir / "report"
    report.plot_curves(progress.read_metrics(workdir / "metrics.jsonl"), out_dir)
    try:
        test = sources.open_split(root, config.data.test_split, require_labels=False)
    except DataError as e:
        logging.info("no overlay: %s", e)
    else:
        example = sources.load_example(test[0])
        label = None if test[0].label_path is None else example["label"]
        prediction = predict_ids(state, config, example["image"])
        report.save_overlay(
            example["image"], prediction, label, out_dir / f"overlay_{example['name']}.png"
        )
    report.write_report_md(workdir)


def _claim_workdir(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Writes config.json; a workdir of a run with another config is refused, not mixed.

    The `parallel` section may differ: a run resumes on any number of devices, in any mode.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = config_to_json(config)
    config_path = workdir / "config.json"

    def model_settings(config_dict: dict) -> dict:
        return {key: value for key, value in config_dict.items() if key != "parallel"}

    if config_path.exists() and model_settings(json.loads(config_path.read_text())) != (
        model_settings(json.loads(config_json))
    ):
        raise ConfigError(
            f"{config_path}: this workdir holds a run with a different config; "
            "use a new --workdir or the same settings to resume"
        )
    if progress.is_main_process():
        config_path.write_text(config_json + "\n")


def compile_steps(
    config: ml_collections.ConfigDict,
    strategy: parallel.DataParallel,
    class_weights: jax.Array | None,
    state: TrainState,
) -> tuple:
    """`train_step` and `eval_step` with their static settings bound, each compiled once
    (jit or pmap, as `strategy` says) for the placed `state`."""
    loss_fn = functools.partial(
        segmentation_loss,
        class_weights=class_weights,
        void=config.data.void,
        aux_weight=config.loss.aux_weight,
    )
    return strategy.compile(
        functools.partial(train_step, loss_fn=loss_fn),
        functools.partial(eval_step, class_weights=class_weights, void=config.data.void),
        state,
    )


class Throughput:
    """Steps and images per second over logging windows; the first (compiling) one is
    left out of the run's average."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.window_start, self.window_steps = time.perf_counter(), 0
        self.images, self.seconds, self.windows = 0, 0.0, 0

    def step(self) -> None:
        self.window_steps += 1

    def end_window(self) -> tuple[int, float]:
        """Closes a window: (its steps, its steps/s)."""
        elapsed = time.perf_counter() - self.window_start
        steps = self.window_steps
        if self.windows > 0:
            self.images += steps * self.batch_size
            self.seconds += elapsed
        self.windows += 1
        self.window_start, self.window_steps = time.perf_counter(), 0
        return steps, steps / elapsed

    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, stop_after_steps: int | None = None
) -> dict | None:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates.

    Resume order: the latest checkpoint in the workdir, else a fresh initialisation.
    Training is data-parallel over the devices of every process (`config.parallel`); with
    several processes (`jax.distributed` initialised) each reads its part of every batch,
    checkpoints are written collectively and only process 0 writes logs and reports.
    Each epoch ends with a validation pass, a checkpoint (also kept as `best` when the val
    mIoU improved) and the early-stopping test on the val loss. The results are those of
    the best checkpoint.

    Args:
      config: an experiment config (see experiments/).
      workdir: output folder; re-running with the same folder resumes.
      stop_after_steps: stop after this many steps of this invocation, checkpointed, as a
        preempted job would (the next invocation resumes); None trains to the end.

    Returns:
      The results.json dict, or None when stopped early by `stop_after_steps`.
    """
    workdir = Path(workdir)
    _claim_workdir(config, workdir)
    root = resolve_data(config)
    data = config.data
    train_source = sources.open_split(root, "train")
    val_source = sources.open_split(root, data.val_split)
    strategy = parallel.create(**config.parallel.to_dict())
    parallel.check_batch_size(data.batch_size, strategy.mesh)
    parallel.check_batch_size(data.eval_batch_size, strategy.mesh, "data.eval_batch_size")
    shard = (jax.process_index(), jax.process_count())

    steps_per_epoch = len(train_source) // data.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{train_source.description}: fewer examples than batch size")
    total_steps = config.train.epochs * steps_per_epoch
    accumulate = config.train.accumulate_steps
    learning_rate = create_learning_rate(config, max(total_steps // accumulate, 1))
    model = build_model(config, bn_axis_name=strategy.axis_name)
    state = create_train_state(
        model,
        create_optimizer(config, learning_rate, frozen_params(model)),
        jax.random.PRNGKey(config.seed),
        (data.batch_size, data.height, data.width, 3),
    )

    # Resume order: the workdir's latest checkpoint, else `model.init_from`, else scratch.
    # Checkpoints hold the unreplicated state, restored onto this run's devices.
    checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
    template = strategy.unreplicated(state)
    restored = checkpoints.restore(_state_tree(template))
    meta = {"early_stopping": {}, "best_mean_iou": -1.0, "data_iterator": None}
    if restored is not None:
        tree, meta = restored
        state = template.replace(**tree)
        logging.info(
            "resuming from step %d in %s", parallel.to_host(state.step), workdir / "checkpoints"
        )
    else:
        if (pretrained := load_init_from(config)) is not None:
            variables = {"params": state.params, "batch_stats": state.batch_stats}
            variables = convert.merge_pretrained(variables, pretrained)
            state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
            logging.info("initialised from %s", config.model.init_from)
        state = strategy.unreplicated(state)
    start_step = int(parallel.to_host(state.step))
    state = strategy.place_state(state)
    weights = class_weights_for(config, workdir, train_source)
    compiled_train_step, compiled_eval_step = compile_steps(config, strategy, weights, state)

    train_iter = iter(
        pipeline.train_dataset(
            train_source,
            height=data.height,
            width=data.width,
            batch_size=data.batch_size,
            seed=config.seed,
            augment=augment.build_augment(data.augment.to_dict()) if data.augment else None,
            workers=data.workers,
            shard=shard,
        )
    )
    if meta["data_iterator"] is not None:
        train_iter.set_state(meta["data_iterator"])

    def validate(state: TrainState) -> dict:
        batches = pipeline.eval_batches(
            val_source,
            height=data.height,
            width=data.width,
            batch_size=data.eval_batch_size,
            shard=shard,
        )
        return evaluate(compiled_eval_step, state, batches, strategy)

    log = progress.MetricsLog(
        workdir / "metrics.jsonl", resume_step=start_step if restored else None
    )
    early_stopping = EarlyStopping(config.train.patience, **meta["early_stopping"])
    best_mean_iou = meta["best_mean_iou"]
    throughput = Throughput(data.batch_size)
    bar = progress.Progress(total_steps, start_step, config.experiment)
    saved_step = start_step if restored else -1

    def save(step: int, *, best: bool = False) -> None:
        nonlocal saved_step
        if step != saved_step or best:
            meta = {
                "early_stopping": early_stopping.state_dict(),
                "best_mean_iou": best_mean_iou,
                "data_iterator": train_iter.get_state(),
            }
            state_tree = _state_tree(strategy.checkpoint_state(state))
            checkpoints.save(step, state_tree, meta, best=best)
            saved_step = step

    try:
        step, pending = start_step, []
        while step < total_steps:
            state, step_metrics = compiled_train_step(state, strategy.place_batch(next(train_iter)))
            step += 1
            throughput.step()
            pending.append(step_metrics)
            end_of_epoch = step % steps_per_epoch == 0
            if step % config.train.log_every_steps == 0 or end_of_epoch:
                host = strategy.fetch(pending)
                pending = []
                loss = float(np.mean([m["loss"] for m in host]))
                if not math.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss {loss} at step {step}")
                steps, steps_per_sec = throughput.end_window()
                log.write(
                    {
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "train_loss": loss,
                        "train_grad_norm": float(host[-1]["grad_norm"]),
                        "learning_rate": float(learning_rate((step - 1) // accumulate)),
                        "steps_per_sec": steps_per_sec,
                        "images_per_sec": steps_per_sec * data.batch_size,
                    }
                )
                bar.update(steps, loss=loss, img_s=steps_per_sec * data.batch_size)

            if end_of_epoch:
                epoch = step // steps_per_epoch
                result = validate(state)
                log.write({"step": step, "epoch": epoch, **_eval_record("val", result)})
                bar.write(
                    f"epoch {epoch}: val loss {result['loss']:.4f} "
                    f"PA {result['pixel_accuracy']:.4f} mIoU {result['mean_iou']:.4f}"
                )
                stop = early_stopping.update(result["loss"])
                is_best = result["mean_iou"] > best_mean_iou
                best_mean_iou = max(best_mean_iou, result["mean_iou"])
                save(step, best=is_best)
                if stop:
                    bar.write(
                        f"early stopping: no lower val loss in {early_stopping.patience} epochs"
                    )
                    break
            elif config.train.checkpoint_every_steps:
                if step % config.train.checkpoint_every_steps == 0:
                    save(step)
            if stop_after_steps is not None and step - start_step >= stop_after_steps:
                save(step)
                return None

        template = strategy.checkpoint_state(state)
        best = checkpoints.restore(_state_tree(template), which="best")
        if best is not None:
            state = strategy.place_state(template.replace(**best[0]))
        result = validate(state)
        host_state = strategy.host_state(state)  # Collective: every process takes part.
        results = {
            "experiment": config.experiment,
            "split": data.val_split,
            "pixel_accuracy": result["pixel_accuracy"],
            "mean_iou": result["mean_iou"],
            "iou": result["iou"],
            "steps": step,
            "epochs": step / steps_per_epoch,
            "train_images_per_sec": throughput.images_per_sec(),
        }
        if progress.is_main_process():
            (workdir / "results.json").write_text(progress.to_json(results, indent=2) + "\n")
            write_report(workdir, config, host_state, root)
        return results
    finally:
        bar.close()
        checkpoints.close()


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Train and evaluate a jaxseg experiment.")
    parser.add_argument("--experiment", required=True, help="name of a file in experiments/")
    parser.add_argument("--data", help='"synthetic" (default) or an IDD root / CSV folder')
    parser.add_argument("--workdir", help="output folder (default: runs/EXPERIMENT)")
    cli.add_overrides(parser, "override a config value, e.g. --set train.epochs=3")
    multihost = parser.add_argument_group(
        "several hosts",
        "run the same command on every host (one process per host); unset values come from "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, else from the cluster "
        "(SLURM, Open MPI) with --distributed",
    )
    multihost.add_argument("--coordinator", help="HOST:PORT of process 0")
    multihost.add_argument("--num-processes", type=int, help="number of processes")
    multihost.add_argument("--process-id", type=int, help="this process's index")
    multihost.add_argument(
        "--distributed",
        action="store_true",
        help="initialise jax.distributed even with none of the values above (auto-detect)",
    )
    args = parser.parse_args(argv)
    with cli.user_errors():
        distributed = parallel.distributed_settings(
            args.coordinator, args.num_processes, args.process_id
        )
        if distributed or args.distributed:
            parallel.initialize_distributed(**distributed)
            if not progress.is_main_process():
                logging.getLogger().setLevel(logging.WARNING)

        config = load_config(args.experiment, data=args.data, overrides=args.overrides)
        workdir = Path(args.workdir or Path("runs") / config.experiment)
        results = train_and_evaluate(config, workdir)
        if progress.is_main_process():
            print(
                f"{config.experiment}: {results['split']} PA {results['pixel_accuracy']:.4f} "
                f"mIoU {results['mean_iou']:.4f}; wrote {workdir / 'results.json'}"
            )


if __name__ == "__main__":
    cli.reexec_with_huge_pages("jaxseg.train")
    main()
