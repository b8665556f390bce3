"""Evaluate a trained run on a split: `python -m jaxseg.evaluate --workdir DIR [--split val]`.

Writes `eval_{split}.json` (the results.json schema) into the workdir and prints the metrics.
"""

import json
from pathlib import Path

import jax

from jaxseg import cli, parallel, progress, train
from jaxseg.classes import SEED_CLASSES
from jaxseg.data import pipeline, sources


def evaluate_run(workdir: str | Path, *, data: str | None = None, split: str = "val") -> dict:
    """Scores the run's best checkpoint on `split` of its data (or of `data`)."""
    workdir = Path(workdir)
    config, state = train.load_trained(workdir)
    if data is not None:
        config.data.source = data
    source = sources.open_split(train.resolve_data(config), split)
    # Evaluation is data-parallel over every device, whatever the run trained with.
    strategy = parallel.create()
    batch_size = config.data.eval_batch_size
    parallel.check_batch_size(batch_size, strategy.mesh, "data.eval_batch_size")
    state = strategy.place_state(strategy.unreplicated(state))
    weights = train.class_weights_for(config, workdir)
    _, step = train.compile_steps(config, strategy, weights, state)
    batches = pipeline.eval_batches(
        source,
        height=config.data.height,
        width=config.data.width,
        batch_size=batch_size,
        shard=(jax.process_index(), jax.process_count()),
    )
    result = train.evaluate(step, state, batches, strategy)
    trained = (
        json.loads((workdir / "results.json").read_text())
        if (workdir / "results.json").exists()
        else {}
    )
    results = {
        "experiment": config.experiment,
        "split": split,
        "pixel_accuracy": result["pixel_accuracy"],
        "mean_iou": result["mean_iou"],
        "iou": result["iou"],
        "steps": int(state.step),
        "epochs": trained.get("epochs", 0.0),
        "train_images_per_sec": trained.get("train_images_per_sec", 0.0),
    }
    if progress.is_main_process():
        (workdir / f"eval_{split}.json").write_text(progress.to_json(results, indent=2) + "\n")
    return results


def format_results(results: dict) -> str:
    """A short human summary: PA, mIoU and the seed's five classes."""
    parts = [f"PA {results['pixel_accuracy']:.4f}", f"mIoU {results['mean_iou']:.4f}"]
    parts += [f"{name} {results['iou'][name]:.4f}" for name in SEED_CLASSES]
    return f"{results['experiment']} on {results['split']}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Evaluate a trained jaxseg run on a data split.")
    parser.add_argument("--workdir", required=True, help="folder of a run of jaxseg.train")
    parser.add_argument("--data", help="dataset to evaluate on (default: the run's own)")
    parser.add_argument("--split", default="val", help="split name (default: val)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        results = evaluate_run(args.workdir, data=args.data, split=args.split)
        print(format_results(results))


if __name__ == "__main__":
    main()
