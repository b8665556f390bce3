"""The training loop: epochs of the compiled train step, a validation pass, a checkpoint and
the early-stopping test at every epoch end (every `train.eval_every_epochs`-th), throughput,
then the results and report of the best checkpoint.

Resume order: the latest checkpoint in the workdir (parameters, optimizer, data iterator,
early-stopping state), else `model.init_from`, else a fresh initialisation. Training is
data-parallel over the devices of every process (`config.parallel`); with several processes
each reads its part of every batch, checkpoints are written collectively and only process 0
writes logs and reports.
"""

import dataclasses
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax

from jaxseg import (
    checkpoint,
    class_weights,
    evaluation,
    files,
    inference,
    parallel,
    planning,
    progress,
    report,
    results,
    segment,
    state,
    steps,
)
from jaxseg.config import check as check_config
from jaxseg.config import config_to_json, flatten_dict
from jaxseg.data import augment, formats, pipeline, prefetch, sources, transforms
from jaxseg.errors import ConfigError, DataError, Interrupted, TrainingError, WorkdirError


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

    @property
    def stopped(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "bad_epochs": self.bad_epochs}


class StopSignals:
    """Notes SIGTERM and SIGINT instead of acting on them, so the loop checkpoints at the
    next step boundary; a second signal of the same kind acts at once (the old handler).
    Handlers can only be set from the main thread; elsewhere nothing is installed."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame) -> None:
        self.received = signum
        signal.signal(signum, self._previous[signum])

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Throughput:
    """Steps and images per second over logging windows (the first, compiling, one is left
    out of the run's average), and the share of each window spent waiting for data."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.window_start, self.window_steps, self.window_wait = time.perf_counter(), 0, 0.0
        self.images, self.seconds, self.windows = 0, 0.0, 0

    def step(self, data_wait_s: float = 0.0) -> None:
        """Counts a step that waited `data_wait_s` seconds for its batch."""
        self.window_steps += 1
        self.window_wait += data_wait_s

    def end_window(self) -> tuple[int, float, float]:
        """Closes a window: (its steps, its steps/s, the share of its time waiting for data)."""
        elapsed = time.perf_counter() - self.window_start
        steps, wait = self.window_steps, self.window_wait
        if self.windows > 0:
            self.images += steps * self.batch_size
            self.seconds += elapsed
        self.windows += 1
        self.window_start, self.window_steps, self.window_wait = time.perf_counter(), 0, 0.0
        return steps, steps / elapsed, min(wait / elapsed, 1.0)

    def restart_window(self) -> None:
        """Starts the window's clock again: the time since (validation, a checkpoint) was
        not spent in training steps."""
        self.window_start = time.perf_counter()

    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def resolve_labels(config: ml_collections.ConfigDict, dataset: formats.Dataset):
    """A copy of `config` naming the dataset's label space in `data.labels` (not "auto"),
    so the saved config says what the model's outputs mean."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.labels = dataset.label_space.name
    config.lock()
    return config


# Settings that say what the trained model is and what its outputs mean: a workdir refuses
# to resume with others. Any other change (epochs, patience, workers, logging, the data
# path, the optimizer, devices) is logged and accepted.
MODEL_MEANING = ("model.name", "model.options", "model.dtype", "data.labels", "data.void", "loss.")


def claim_workdir(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Writes config.json; a workdir of a run whose model means something else is refused,
    not mixed, and other changed settings are logged."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = config_to_json(config)
    config_path = workdir / "config.json"
    if config_path.exists():
        old, new = (
            flatten_dict(json.loads(text)) for text in (config_path.read_text(), config_json)
        )
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        for key in changed:
            if key.startswith(MODEL_MEANING):
                raise ConfigError(
                    f"{config_path}: this workdir's run has {key}={old.get(key)!r}, not "
                    f"{new.get(key)!r}; use a new --workdir (model.init_from={workdir} "
                    "fine-tunes from this run)"
                )
            logging.info("resuming with %s=%r (was %r)", key, new.get(key), old.get(key))
    if progress.is_main_process():
        files.write_atomic((config_json + "\n").encode(), config_path)


@dataclasses.dataclass
class Loop:
    """Everything one training invocation works with; `state` and the counters change."""

    config: ml_collections.ConfigDict
    workdir: Path
    dataset: formats.Dataset
    val_source: sources.Source
    strategy: parallel.DataParallel
    steps: steps.Steps
    state: state.TrainState
    learning_rate: optax.Schedule
    checkpoints: checkpoint.Checkpoints
    train_iter: object  # A grain DatasetIterator or a Prefetcher of one (get_state).
    steps_per_epoch: int
    total_steps: int
    start_step: int
    resumed: bool
    early_stopping: EarlyStopping
    best_mean_iou: float
    log: progress.MetricsLog
    bar: progress.Progress
    throughput: Throughput
    # Train metrics since the last log record: device outputs (`pending`) and host floats
    # (`unlogged`, also saved in checkpoints so a resumed run logs the same windows).
    unlogged: list
    nonfinite: dict  # {"in_a_row": int, "skipped": int}: updates skipped by train.on_nan.
    skipped_files: list  # Files left out under data.on_error=skip (training and validation).
    pending: list = dataclasses.field(default_factory=list)
    saved_step: int = -1
    saved_at: float = dataclasses.field(default_factory=time.monotonic)
    # Predicts the val overlays and the report's; compiled once, given each epoch's weights.
    overlay_segmenter: inference.Segmenter | None = None
    # (step, val metrics) of this invocation's latest validation when it set a new best:
    # `finish` reuses them if no step came after, instead of restoring and validating again.
    best_validation: tuple[int, dict] | None = None

    def segmenter(self, host_state: state.TrainState) -> inference.Segmenter:
        """A `Segmenter` of `host_state`'s weights that keeps its compiled functions across
        calls (a fresh one would compile at every epoch)."""
        if self.overlay_segmenter is None:
            self.overlay_segmenter = inference.Segmenter(
                host_state, self.config, self.dataset.label_space
            )
        else:
            self.overlay_segmenter = self.overlay_segmenter.with_state(host_state)
        return self.overlay_segmenter

    def validate(self) -> dict:
        batches = evaluation.eval_batches(
            self.config, self.val_source, self.strategy, self.skipped_files
        )
        return evaluation.evaluate(
            self.steps.eval,
            self.state,
            batches,
            self.strategy,
            self.dataset.label_space,
            total=len(self.val_source),
        )

    def save(self, step: int, *, best: bool = False) -> None:
        if step == self.saved_step and not best:
            return
        meta = {
            "early_stopping": self.early_stopping.state_dict(),
            "best_mean_iou": self.best_mean_iou,
            "data_iterator": self.train_iter.get_state(),
            # Copies: an asynchronous write may serialise them after they changed.
            "unlogged_metrics": list(self.fetch_pending()),
            "nonfinite": dict(self.nonfinite),
            "skipped_files": list(self.skipped_files),
        }
        tree = state.checkpoint_tree(self.strategy.checkpoint_state(self.state))
        self.checkpoints.save(step, tree, meta, best=best)
        self.saved_step, self.saved_at = step, time.monotonic()

    def fetch_pending(self) -> list[dict]:
        """The train metrics not logged yet, as host floats (fetching the pending ones)."""
        if self.pending:
            self.unlogged += [
                {
                    "loss": float(m["loss"]),
                    "grad_norm": float(m["grad_norm"]),
                    "finite": bool(m["finite"]),
                }
                for m in self.strategy.fetch(self.pending)
            ]
            self.pending = []
        return self.unlogged


def _initial_state(config, dataset, strategy, checkpoints, image_shape, total_updates):
    """(unreplicated state, learning rate, checkpoint meta or None): the workdir's latest
    checkpoint, else `model.init_from`, else a fresh initialisation. Checkpoints hold the
    unreplicated state, restored onto this run's devices."""
    created = state.create(
        config,
        dataset.label_space,
        image_shape=image_shape,
        total_updates=total_updates,
        bn_axis_name=strategy.axis_name,
    )
    template = strategy.unreplicated(created.state)
    restored = checkpoints.restore(state.checkpoint_tree(template))
    if restored is not None:
        train_state = template.replace(**restored[0])
        logging.info("resuming from step %d", parallel.to_host(train_state.step))
        return train_state, created.learning_rate, restored[1]
    train_state = state.with_pretrained(created.state, config)
    if config.model.init_from:
        logging.info("initialised from %s", config.model.init_from)
    return strategy.unreplicated(train_state), created.learning_rate, None


# The checkpoint metadata of a run that starts afresh (and the defaults of keys that
# checkpoints of older versions lack).
RUN_START = {
    "early_stopping": {},
    "best_mean_iou": -1.0,
    "data_iterator": None,
    "unlogged_metrics": [],
    "nonfinite": {"in_a_row": 0, "skipped": 0},
    "skipped_files": [],
}


def _train_iterator(
    config: ml_collections.ConfigDict, source: sources.Source, saved_state, skipped: list
):
    """This process's iterator over the training batches, at `saved_state` if not None;
    under `data.on_error=skip` the files left out are appended to `skipped`. A thread reads
    `data.prefetch` batches ahead, so decoding overlaps the step even without workers."""
    data = config.data
    train_iter = iter(
        pipeline.train_dataset(
            source,
            height=data.height,
            width=data.width,
            batch_size=data.batch_size,
            seed=config.seed,
            augment=augment.build_augment(data.augment.to_dict()) if data.augment else None,
            workers=data.workers,
            shard=(jax.process_index(), jax.process_count()),
            on_error=data.on_error,
            skipped=skipped,
            keep_in_memory=data.keep_in_memory,
            progressive=[tuple(entry) for entry in data.progressive_sizes],
        )
    )
    if saved_state is not None:
        train_iter.set_state(saved_state)
    return prefetch.Prefetcher(train_iter, data.prefetch) if data.prefetch > 0 else train_iter


def prepare(config: ml_collections.ConfigDict, workdir: Path) -> Loop:
    """Everything before the first step: data, devices, state (resumed or new), steps."""
    check_config(config)
    strategy = parallel.create(**config.parallel.to_dict())
    parallel.check_batch_size(config.data.batch_size, strategy.mesh)
    state.check_input_size(config)
    dataset = formats.config_dataset(config)
    config = resolve_labels(config, dataset)
    claim_workdir(config, workdir)
    data = config.data
    train_source = dataset.split("train")
    steps_per_epoch = len(train_source) // data.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{train_source.description}: fewer examples than batch size")
    total_steps = config.train.epochs * steps_per_epoch
    checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
    train_state, learning_rate, meta = _initial_state(
        config,
        dataset,
        strategy,
        checkpoints,
        (data.batch_size, data.height, data.width, 3),
        max(total_steps // config.train.accumulate_steps, 1),
    )
    start_step = int(parallel.to_host(train_state.step))
    train_state = strategy.place_state(train_state)
    outputs = state.num_outputs(config, dataset.label_space)
    weights = class_weights.for_config(config, workdir, dataset.label_space, outputs, train_source)
    num_classes = dataset.label_space.num_classes
    compiled = steps.compile_steps(config, strategy, num_classes, weights, train_state)
    if config.train.log_plan and progress.is_main_process():
        logging.info(planning.make_plan(config, find_max_batch=False).summary())
    resumed = meta is not None
    meta = {**RUN_START, **(meta or {})}
    skipped_files = list(meta["skipped_files"])
    train_iter = _train_iterator(config, train_source, meta["data_iterator"], skipped_files)
    return Loop(
        config=config,
        workdir=workdir,
        dataset=dataset,
        val_source=dataset.split(data.val_split),
        strategy=strategy,
        steps=compiled,
        state=train_state,
        learning_rate=learning_rate,
        checkpoints=checkpoints,
        train_iter=train_iter,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        start_step=start_step,
        resumed=resumed,
        early_stopping=EarlyStopping(config.train.patience, **meta["early_stopping"]),
        best_mean_iou=meta["best_mean_iou"],
        log=progress.MetricsLog(workdir / "metrics.jsonl", start_step if resumed else None),
        bar=progress.Progress(total_steps, start_step, config.experiment),
        throughput=Throughput(data.batch_size),
        unlogged=list(meta["unlogged_metrics"]),
        nonfinite=dict(meta["nonfinite"]),
        skipped_files=skipped_files,
        saved_step=start_step if resumed else -1,
    )


def _check_finite(loop: Loop, records: list[dict], first_step: int) -> list[int]:
    """Applies `train.on_nan` to the steps `first_step`, ... of `records` (whose non-finite
    updates the train step already left out); returns the skipped steps.

    Raises:
      TrainingError: a non-finite step under `on_nan=stop`, or too many in a row.
    """
    skipped, per_epoch = [], loop.steps_per_epoch
    on_nan, limit = loop.config.train.on_nan, loop.config.train.max_skipped_in_a_row
    for step, record in enumerate(records, start=first_step):
        if record["finite"]:
            loop.nonfinite["in_a_row"] = 0
            continue
        loop.nonfinite["in_a_row"] += 1
        loop.nonfinite["skipped"] += 1
        in_a_row = loop.nonfinite["in_a_row"]
        where = (
            f"step {step} (epoch {(step - 1) // per_epoch + 1}, batch {(step - 1) % per_epoch + 1})"
        )
        if on_nan == "stop" or (limit and in_a_row >= limit):
            raise TrainingError(
                f"non-finite loss or gradients at {where}"
                + (f", {in_a_row} in a row" if on_nan == "skip" else "")
                + "; the model keeps its last finite update. Lower optimizer.learning_rate, "
                "check the data, or raise train.max_skipped_in_a_row (train.on_nan=skip)"
            )
        logging.warning("non-finite loss or gradients at %s: update skipped", where)
        skipped.append(step)
    return skipped


def _log_window(loop: Loop, step: int) -> None:
    """Logs the train record of the steps since the last log (mean loss of the finite
    ones, the skipped ones by step)."""
    records, loop.unlogged = loop.fetch_pending(), []
    skipped = _check_finite(loop, records, step - len(records) + 1)
    finite = [r for r in records if r["finite"]]
    loss = float(np.mean([r["loss"] for r in finite])) if finite else math.nan
    steps_done, steps_per_sec, data_wait = loop.throughput.end_window()
    batch_size = loop.config.data.batch_size
    record = {
        "step": step,
        "epoch": step / loop.steps_per_epoch,
        "train_loss": loss,
        "train_grad_norm": finite[-1]["grad_norm"] if finite else math.nan,
        "learning_rate": float(
            loop.learning_rate((step - 1) // loop.config.train.accumulate_steps)
        ),
        "steps_per_sec": steps_per_sec,
        "images_per_sec": steps_per_sec * batch_size,
        "data_wait": data_wait,
    }
    if skipped:
        record["train_skipped_steps"] = skipped
    loop.log.write(record)
    loop.bar.update(steps_done, loss=loss, img_s=steps_per_sec * batch_size)


def _val_overlay(loop: Loop) -> np.ndarray:
    """The first `train.tensorboard_images` val examples at the model's input size, a row
    each: the image, the prediction's overlay and the label's overlay."""
    space, config = loop.dataset.label_space, loop.config
    # Collective: every process takes part.
    segmenter = loop.segmenter(loop.strategy.host_state(loop.state))
    rows = []
    for index in range(min(config.train.tensorboard_images, len(loop.val_source))):
        try:
            example = sources.load_example(loop.val_source[index], space)
        except DataError:  # Already reported by the validation pass (data.on_error=skip).
            continue
        example = transforms.resize(example, config.data.height, config.data.width)
        image, label = example["image"], example["label"]
        prediction = segmenter(image)
        overlays = [report.blend(image, ids, space) for ids in (prediction, label)]
        rows.append(np.concatenate([image, *overlays], axis=1))
    return np.concatenate(rows) if rows else np.zeros((1, 1, 3), np.uint8)


def _end_epoch(loop: Loop, step: int) -> bool:
    """Validation, the epoch's log record and checkpoint; True when early stopping says so."""
    epoch = step // loop.steps_per_epoch
    result = loop.validate()
    loop.log.write(
        {
            "step": step,
            "epoch": epoch,
            "val_loss": result["loss"],
            "val_pixel_accuracy": result["pixel_accuracy"],
            "val_mean_iou": result["mean_iou"],
            "val_mean_accuracy": result["mean_accuracy"],
            "val_fw_iou": result["fw_iou"],
            "val_iou": result["iou"],
        }
    )
    loop.bar.write(
        f"epoch {epoch}: val loss {result['loss']:.4f} "
        f"PA {result['pixel_accuracy']:.4f} mIoU {result['mean_iou']:.4f}"
    )
    if loop.config.train.tensorboard_images:
        loop.log.image("val_overlay", _val_overlay(loop), step)
    stop = loop.early_stopping.update(result["loss"])
    is_best = result["mean_iou"] > loop.best_mean_iou
    loop.best_mean_iou = max(loop.best_mean_iou, result["mean_iou"])
    loop.best_validation = (step, result) if is_best else None
    loop.save(step, best=is_best)
    if stop:
        loop.bar.write(
            f"early stopping: no lower val loss in {loop.early_stopping.patience} epochs"
        )
    return stop


def _evaluation_due(loop: Loop, step: int) -> bool:
    """Whether the epoch that `step` ends is validated: every `train.eval_every_epochs`-th
    and the last."""
    epoch = step // loop.steps_per_epoch
    return epoch % loop.config.train.eval_every_epochs == 0 or step == loop.total_steps


def _checkpoint_due(loop: Loop, step: int) -> bool:
    every, minutes = (
        loop.config.train.checkpoint_every_steps,
        loop.config.train.checkpoint_every_minutes,
    )
    if every and step % every == 0:
        return True
    return bool(minutes) and time.monotonic() - loop.saved_at >= 60 * minutes


def run_steps(
    loop: Loop, stop_after_steps: int | None = None, signals: StopSignals | None = None
) -> int | None:
    """Trains until the last step or early stopping; returns the final step, or None when
    stopped (checkpointed) after `stop_after_steps` steps of this invocation.

    Raises:
      Interrupted: `signals` received SIGTERM or SIGINT; the step it ended is checkpointed.
    """
    step = loop.start_step
    if loop.early_stopping.stopped:  # Resumed after the run had stopped early.
        return step
    while step < loop.total_steps:
        # Time blocked here is time the step (dispatched asynchronously) cannot hide.
        wait_start = time.perf_counter()
        host_batch = next(loop.train_iter)
        data_wait_s = time.perf_counter() - wait_start
        batch = loop.strategy.place_batch(host_batch)
        loop.state, step_metrics = loop.steps.train(loop.state, batch)
        step += 1
        loop.throughput.step(data_wait_s)
        loop.pending.append(step_metrics)
        end_of_epoch = step % loop.steps_per_epoch == 0
        if step % loop.config.train.log_every_steps == 0 or end_of_epoch:
            _log_window(loop, step)
        if end_of_epoch and _evaluation_due(loop, step):
            if _end_epoch(loop, step):
                return step
            loop.throughput.restart_window()
        elif _checkpoint_due(loop, step):
            loop.save(step)
            loop.throughput.restart_window()
        if signals is not None and signals.received is not None:
            loop.save(step)
            raise Interrupted(signals.received, step, str(loop.workdir))
        if stop_after_steps is not None and step - loop.start_step >= stop_after_steps:
            loop.save(step)
            return None
    return step


def write_report(loop: Loop, host_state: state.TrainState) -> None:
    """report/: the curves of metrics.jsonl, the confusion matrix of results.json, the
    first test image's overlay, report.md."""
    out_dir = loop.workdir / "report"
    space = loop.dataset.label_space
    report.plot_curves(progress.read_metrics(loop.workdir / "metrics.jsonl"), out_dir, space)
    report.save_confusion(loop.workdir)
    try:
        test = loop.dataset.split(loop.config.data.test_split, require_labels=False)
    except DataError as e:
        logging.info("no overlay: %s", e)
    else:
        example = sources.load_example(test[0], space)
        label = None if test[0].label_path is None else example["label"]
        prediction = loop.segmenter(host_state)(example["image"])
        path = out_dir / f"overlay_{example['name']}.png"
        report.save_overlay(example["image"], prediction, label, space, path)
    report.write_report_md(loop.workdir)


def finish(loop: Loop, step: int) -> dict:
    """Results of the best checkpoint: results.json and report/ (process 0)."""
    if loop.best_validation is not None and loop.best_validation[0] == step:
        # The state in hand is the best checkpoint's, and was just validated.
        metrics = loop.best_validation[1]
    else:
        template = loop.strategy.checkpoint_state(loop.state)
        best = loop.checkpoints.restore(state.checkpoint_tree(template), which="best")
        if best is not None:
            loop.state = loop.strategy.place_state(template.replace(**best[0]))
        metrics = loop.validate()
    record = results.record(
        experiment=loop.config.experiment,
        split=loop.config.data.val_split,
        data=loop.config.data.source,
        label_space=loop.dataset.label_space,
        metrics=metrics,
        steps=step,
        epochs=step / loop.steps_per_epoch,
        train_images_per_sec=loop.throughput.images_per_sec(),
        **(
            {"skipped_files": sorted(set(loop.skipped_files))}
            if loop.config.data.on_error == "skip"
            else {}
        ),
        eval=segment.options(loop.config).record(),
    )
    host_state = loop.strategy.host_state(loop.state)  # Collective: every process takes part.
    if progress.is_main_process():
        results.write(loop.workdir / "results.json", record)
        write_report(loop, host_state)
    return record


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, stop_after_steps: int | None = None
) -> dict | None:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates.

    Each epoch (every `train.eval_every_epochs`-th, and the last) ends with a validation
    pass, a checkpoint (also kept as `best` when the val mIoU improved) and the
    early-stopping test on the val loss. The results are those of the best checkpoint.

    Args:
      config: an experiment config (see experiments/).
      workdir: output folder; re-running with the same folder resumes.
      stop_after_steps: stop after this many steps of this invocation, checkpointed, as a
        preempted job would (the next invocation resumes); None trains to the end.

    Returns:
      The results.json record, or None when stopped early by `stop_after_steps`.

    Raises:
      Interrupted: SIGTERM or SIGINT (noted from the start of this call) stopped training
        at the next step boundary, after saving a checkpoint there.
      WorkdirError: the workdir could not be written (earlier checkpoints stay intact).
    """
    with StopSignals() as signals:
        try:
            loop = prepare(config, Path(workdir))
            try:
                step = run_steps(loop, stop_after_steps, signals)
                return None if step is None else finish(loop, step)
            finally:
                loop.bar.close()
                loop.log.close()
                loop.checkpoints.close()
                if isinstance(loop.train_iter, prefetch.Prefetcher):
                    loop.train_iter.close()
        except OSError as e:  # A read-only or full disk: the files already written stay.
            raise WorkdirError(
                f"{workdir}: cannot write {e.filename or ''} ({e.strerror})"
            ) from None
