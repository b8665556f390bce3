"""Evaluation over a split: batches through the compiled `eval_step`, metrics from the summed
confusion matrix. Used by validation during training and by `jaxseg.evaluate`."""

from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxseg import class_weights, metrics, parallel, progress, results, segment, state, steps
from jaxseg.data import formats, pipeline, sources
from jaxseg.data.labels import LabelSpace


def eval_batch_size(requested: int, strategy: parallel.DataParallel) -> int:
    """`requested` rounded up to a multiple of the device count: evaluation pads its
    batches and masks the padding, so any size works on any number of devices."""
    devices = strategy.num_devices
    return -(-requested // devices) * devices


def eval_batches(
    config: ml_collections.ConfigDict,
    source: sources.Source,
    strategy: parallel.DataParallel,
    skipped: list | None = None,
):
    """This process's part of every evaluation batch of `source`: images resized to the
    training size under `eval.mode=resize`, else at their own size. Under
    `data.on_error=skip` the files left out are appended to `skipped`."""
    on_host = segment.options(config).resizes_on_host
    return pipeline.eval_batches(
        source,
        height=config.data.height if on_host else None,
        width=config.data.width if on_host else None,
        batch_size=eval_batch_size(config.data.eval_batch_size, strategy),
        shard=(jax.process_index(), jax.process_count()),
        on_error=config.data.on_error,
        skipped=skipped,
    )


def _add_on_host(totals: dict | None, outputs: dict) -> dict:
    """Adds one batch's fetched eval-step outputs in 64 bits: a split's confusion counts
    pass 2^31 per cell (int32 on the device) well before its batches do."""
    outputs = {
        key: np.asarray(value, np.int64 if key == "confusion" else np.float64)
        for key, value in outputs.items()
    }
    return outputs if totals is None else {key: totals[key] + outputs[key] for key in totals}


def evaluate(
    eval_step,
    train_state: state.TrainState,
    batches,
    strategy: parallel.DataParallel,
    label_space: LabelSpace,
    total: int | None = None,
) -> dict:
    """Runs the compiled `eval_step` over every batch; metrics of the confusion matrix
    summed over batches (int64, on the host) and devices, and the loss of the summed loss
    terms (`steps.loss_terms`).

    Args:
      total: the number of examples, for the progress bar.

    Returns:
      The dict of `metrics.metrics_from_confusion`, plus "loss".
    """
    bar = progress.Progress(total, 0, "eval", unit="img", leave=False)
    totals, pending = None, None
    for batch in batches:
        batch.pop("name", None)
        # Each process holds its rows of the global batch; they count alike.
        bar.update(int(batch["mask"].sum()) * jax.process_count())
        outputs = eval_step(train_state, strategy.place_batch(batch))
        # Fetching the previous batch's outputs after dispatching this one keeps the
        # device busy while the host adds.
        if pending is not None:
            totals = _add_on_host(totals, strategy.fetch(pending))
        pending = outputs
    if pending is not None:
        totals = _add_on_host(totals, strategy.fetch(pending))
    bar.close()
    result = metrics.metrics_from_confusion(totals["confusion"], label_space.class_names)
    result["loss"] = float(totals["loss_sum"] / max(float(totals["weight_sum"]), 1e-12))
    return result


def evaluate_run(
    workdir: str | Path, *, data: str | None = None, split: str = "val", overrides=()
) -> dict:
    """Scores a run's best checkpoint on `split` of its data (or of `data`), data-parallel
    over every device, and writes `eval_{split}.json` into the workdir.

    Args:
      overrides: `--set key=value` strings applied to the run's config (e.g. a larger
        data.eval_batch_size).
    """
    workdir = Path(workdir)
    run = state.restore(workdir, overrides)
    config = run.config
    if data is not None:
        config.data.source = data
    source = formats.config_dataset(config).split(split)
    strategy = parallel.create()
    train_state = strategy.place_state(strategy.unreplicated(run.state))
    outputs = state.num_outputs(config, run.label_space)
    weights = class_weights.for_config(config, workdir, run.label_space, outputs)
    compiled = steps.compile_steps(
        config, strategy, run.label_space.num_classes, weights, train_state
    )
    skipped = []
    result = evaluate(
        compiled.eval,
        train_state,
        eval_batches(config, source, strategy, skipped),
        strategy,
        run.label_space,
        total=len(source),
    )
    trained = results.load(workdir / "results.json") if (workdir / "results.json").exists() else {}
    record = results.record(
        experiment=config.experiment,
        split=split,
        data=config.data.source,
        label_space=run.label_space,
        metrics=result,
        steps=int(run.state.step),
        epochs=trained.get("epochs", 0.0),
        train_images_per_sec=trained.get("train_images_per_sec", 0.0),
        **({"skipped_files": sorted(skipped)} if config.data.on_error == "skip" else {}),
        eval=segment.options(config).record(),
    )
    if jax.process_index() == 0:
        results.write(workdir / f"eval_{split}.json", record)
    return record
