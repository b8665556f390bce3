"""Training and evaluation: pure jitted steps and the loop around them.

`python -m jaxseg.train --experiment NAME [--data synthetic|PATH] [--workdir DIR]
[--set key=value ...]` trains, evaluates and writes config.json, metrics.jsonl,
checkpoints/, results.json and report/ into the workdir; running it again resumes.
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

from jaxseg import checkpoint, losses, metrics, models, parallel, progress
from jaxseg.classes import CLASS_NAMES, NUM_CLASSES
from jaxseg.data import pipeline, sources, synthetic
from jaxseg.errors import ConfigError, DataError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax), plus BatchNorm statistics and a key."""

    batch_stats: Any
    rng: jax.Array  # Base key; step s uses fold_in(rng, s).


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype {config.model.dtype!r}; valid: {', '.join(DTYPES)}")
    try:
        return models.get_model(
            config.model.name,
            num_classes=losses.num_outputs(NUM_CLASSES, config.data.void),
            dtype=DTYPES[config.model.dtype],
            **config.model.options.to_dict(),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model {config.model.name!r}: {e}") from None


def create_learning_rate(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
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
    config: ml_collections.ConfigDict, learning_rate: optax.Schedule
) -> optax.GradientTransformation:
    opt = config.optimizer
    optimizers = {
        "adam": lambda: optax.adam(learning_rate),
        "adamw": lambda: optax.adamw(learning_rate, weight_decay=opt.weight_decay),
        "sgd": lambda: optax.sgd(learning_rate, momentum=0.9),
    }
    if opt.name not in optimizers:
        raise ConfigError(f"optimizer.name {opt.name!r}; valid: {', '.join(optimizers)}")
    return optimizers[opt.name]()


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
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}


def eval_step(state: TrainState, batch: dict, *, class_weights: jax.Array | None, void: str):
    """Loss terms and the confusion matrix of one batch; `batch["mask"]` [B] marks padding.

    Returns {"loss_sum", "weight_sum", "confusion" [26, 27]}, all of which add over batches.
    """
    outputs = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    logits = _split_outputs(outputs)["out"]
    mask = jnp.broadcast_to(batch["mask"][:, None, None], batch["label"].shape)
    labels = losses.apply_void_policy(batch["label"], void)
    labels = jnp.where(mask, labels, losses.VOID)
    loss_sum, weight_sum = losses.cross_entropy_terms(logits, labels, class_weights)
    predictions = jnp.argmax(logits, axis=-1)
    return {
        "loss_sum": loss_sum,
        "weight_sum": weight_sum,
        "confusion": metrics.confusion_matrix(batch["label"], predictions, mask),
    }


def evaluate(jitted_eval_step, state: TrainState, batches, mesh) -> dict:
    """Runs `jitted_eval_step` over every batch; metrics from the summed confusion matrix."""
    totals = None
    for batch in batches:
        batch.pop("name", None)
        out = jitted_eval_step(state, parallel.shard_batch(batch, mesh))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
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


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, stop_after_steps: int | None = None
) -> dict | None:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates.

    Args:
      config: an experiment config (see experiments/).
      workdir: output folder; re-running with the same folder resumes.
      stop_after_steps: stop after this many steps of this invocation, checkpointed, as a
        preempted job would (the next invocation resumes); None trains to the end.

    Returns:
      The results.json dict, or None when stopped early by `stop_after_steps`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    config_path = workdir / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != config.to_dict():
        raise ConfigError(
            f"{config_path}: this workdir holds a run with a different config; "
            "use a new --workdir or the same settings to resume"
        )
    if progress.is_main_process():
        config_path.write_text(config_json + "\n")

    root = resolve_data(config)
    data = config.data
    train_source = sources.open_split(root, "train")
    val_source = sources.open_split(root, data.val_split)
    mesh = parallel.data_mesh()
    parallel.check_batch_size(data.batch_size, mesh)
    parallel.check_batch_size(data.eval_batch_size, mesh)

    steps_per_epoch = len(train_source) // data.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{train_source.description}: fewer examples than batch size")
    total_steps = config.train.epochs * steps_per_epoch
    learning_rate = create_learning_rate(config, total_steps)
    model = build_model(config)
    rng = jax.random.PRNGKey(config.seed)
    state = create_train_state(
        model,
        create_optimizer(config, learning_rate),
        rng,
        (data.batch_size, data.height, data.width, 3),
    )
    state = jax.device_put(state, parallel.replicated(mesh))

    checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
    restored = checkpoints.restore(_state_tree(state))
    meta = {"epoch": 0, "early_stopping": {}, "best_mean_iou": -1.0, "data_iterator": None}
    if restored is not None:
        tree, meta = restored
        state = state.replace(**tree)
        logging.info("resuming from step %d in %s", int(state.step), workdir / "checkpoints")
    start_step = int(state.step)

    class_weights = None
    loss_fn = functools.partial(
        segmentation_loss,
        class_weights=class_weights,
        void=data.void,
        aux_weight=config.loss.aux_weight,
    )
    repl, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    jitted_train_step = jax.jit(
        functools.partial(train_step, loss_fn=loss_fn),
        in_shardings=(repl, sharded),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )
    jitted_eval_step = jax.jit(
        functools.partial(eval_step, class_weights=class_weights, void=data.void),
        in_shardings=(repl, sharded),
        out_shardings=repl,
    )

    train_data = pipeline.train_dataset(
        train_source,
        height=data.height,
        width=data.width,
        batch_size=data.batch_size,
        seed=config.seed,
        workers=data.workers,
    )
    train_iter = iter(train_data)
    if meta["data_iterator"] is not None:
        train_iter.set_state(meta["data_iterator"])

    def val_batches():
        return pipeline.eval_batches(
            val_source, height=data.height, width=data.width, batch_size=data.eval_batch_size
        )

    log = progress.MetricsLog(workdir / "metrics.jsonl", resume_step=start_step if restored else None)
    early_stopping = EarlyStopping(config.train.patience, **meta["early_stopping"])
    best_mean_iou = meta["best_mean_iou"]
    epoch = meta["epoch"]
    bar = progress.Progress(total_steps, start_step, f"{config.experiment}")

    last_saved = [start_step if restored else -1]

    def save(step: int, *, best: bool = False) -> None:
        if step == last_saved[0] and not best:
            return
        last_saved[0] = step
        meta_now = {
            "epoch": epoch,
            "early_stopping": early_stopping.state_dict(),
            "best_mean_iou": best_mean_iou,
            "data_iterator": train_iter.get_state(),
        }
        checkpoints.save(step, _state_tree(state), meta_now, best=best)

    stopped_early = False
    step = start_step
    window_start, window_steps, timed_images, timed_seconds = time.perf_counter(), 0, 0, 0.0
    pending = []
    while step < total_steps:
        batch = next(train_iter)
        state, step_metrics = jitted_train_step(state, parallel.shard_batch(batch, mesh))
        step += 1
        window_steps += 1
        pending.append(step_metrics)
        if step % config.train.log_every_steps == 0 or step % steps_per_epoch == 0:
            host = jax.device_get(pending)
            loss = float(np.mean([m["loss"] for m in host]))
            if not math.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss {loss} at step {step}")
            elapsed = time.perf_counter() - window_start
            steps_per_sec = window_steps / elapsed
            if step - window_steps > start_step:  # Leave the compiling window out.
                timed_images += window_steps * data.batch_size
                timed_seconds += elapsed
            log.write(
                {
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "train_loss": loss,
                    "train_grad_norm": float(host[-1]["grad_norm"]),
                    "learning_rate": float(learning_rate(step - 1)),
                    "steps_per_sec": steps_per_sec,
                    "images_per_sec": steps_per_sec * data.batch_size,
                }
            )
            bar.update(window_steps, loss=loss, img_s=steps_per_sec * data.batch_size)
            window_start, window_steps, pending = time.perf_counter(), 0, []

        if step % steps_per_epoch == 0:
            epoch = step // steps_per_epoch
            result = evaluate(jitted_eval_step, state, val_batches(), mesh)
            log.write({"step": step, "epoch": epoch, **_eval_record("val", result)})
            bar.write(
                f"epoch {epoch}: val loss {result['loss']:.4f} "
                f"PA {result['pixel_accuracy']:.4f} mIoU {result['mean_iou']:.4f}"
            )
            stopped_early = early_stopping.update(result["loss"])
            is_best = result["mean_iou"] > best_mean_iou
            best_mean_iou = max(best_mean_iou, result["mean_iou"])
            save(step, best=is_best)
            if stopped_early:
                bar.write(f"early stopping: val loss has not improved for {early_stopping.patience} epochs")
                break
        elif config.train.checkpoint_every_steps and step % config.train.checkpoint_every_steps == 0:
            save(step)
        if stop_after_steps is not None and step - start_step >= stop_after_steps:
            save(step)
            bar.close()
            checkpoints.close()
            return None
    bar.close()

    best = checkpoints.restore(_state_tree(state), which="best")
    if best is not None:
        state = state.replace(**best[0])
    result = evaluate(jitted_eval_step, state, val_batches(), mesh)
    results = {
        "experiment": config.experiment,
        "split": data.val_split,
        "pixel_accuracy": result["pixel_accuracy"],
        "mean_iou": result["mean_iou"],
        "iou": result["iou"],
        "steps": step,
        "epochs": step / steps_per_epoch,
        "train_images_per_sec": timed_images / timed_seconds if timed_seconds else float("nan"),
    }
    if progress.is_main_process():
        (workdir / "results.json").write_text(progress.to_json(results, indent=2) + "\n")
    checkpoints.close()
    return results


def main(argv: list[str] | None = None) -> None:
    from jaxseg import cli

    parser = cli.parser("Train and evaluate a jaxseg experiment.")
    parser.add_argument("--experiment", required=True, help="name of a file in experiments/")
    parser.add_argument("--data", help='"synthetic" (default) or an IDD root / CSV folder')
    parser.add_argument("--workdir", help="output folder (default: runs/EXPERIMENT)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3",
    )
    args = parser.parse_args(argv)
    with cli.user_errors():
        from jaxseg.config import load_config

        config = load_config(args.experiment, data=args.data, overrides=args.overrides)
        workdir = Path(args.workdir or Path("runs") / config.experiment)
        results = train_and_evaluate(config, workdir)
        print(
            f"{config.experiment}: {results['split']} PA {results['pixel_accuracy']:.4f} "
            f"mIoU {results['mean_iou']:.4f}; wrote {workdir / 'results.json'}"
        )


if __name__ == "__main__":
    main()
