"""The study's whole Table 1 in one command (docs/study.md):
`python -m jaxseg.paper [--data synthetic|PATH] --out DIR [--experiments a,b] [--set k=v]`.

Runs every experiment of the table in sequence into DIR/NAME (a finished run, one with
results.json, is skipped; an interrupted one resumes), then writes DIR/table.md with each
run beside the study's published row. Every run's config and starting weights are checked
before the first one starts (the `transfer` row needs the torch extra on synthetic data).
"""

import time
from pathlib import Path

from jaxseg import cli

if __name__ == "__main__":
    # Before jax and torch are imported (see the function's docstring).
    cli.reexec_with_huge_pages("jaxseg.paper")

from jaxseg import convert, report, results  # noqa: E402
from jaxseg.config import load_config  # noqa: E402
from jaxseg.trainer import train_and_evaluate  # noqa: E402

# The rows of the study's Table 1, in its order.
TABLE1 = ("baseline", "flip", "rotation", "weighted_loss", "custom", "transfer", "unet")


def run_paper(
    out_dir: str | Path,
    *,
    data: str | None = None,
    names: tuple[str, ...] | None = None,
    overrides: list[str] = (),
) -> Path:
    """Trains each experiment (skipping finished ones) and writes the comparison table."""
    out_dir = Path(out_dir)
    names = names or TABLE1
    configs = {name: load_config(name, data=data, overrides=list(overrides)) for name in names}
    for config in configs.values():  # Fails here, not after hours of other runs.
        convert.init_from_path(config.model.init_from, config.model.name)
    for name, config in configs.items():
        workdir = out_dir / name
        if (workdir / "results.json").exists():
            print(f"{name}: finished earlier, skipped")
            continue
        start = time.perf_counter()
        record = train_and_evaluate(config, workdir)
        print(
            f"{name}: PA {record['pixel_accuracy']:.4f} mIoU {record['mean_iou']:.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    runs = [(name, results.load(out_dir / name / "results.json")) for name in names]
    table_path = out_dir / "table.md"
    table_path.write_text(
        report.results_table(runs) + "\nAll classes:\n\n" + report.results_table(runs, True)
    )
    return table_path


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.paper", "Run every experiment of the study's Table 1.")
    parser.add_argument("--data", help=cli.DATA_HELP + " (default: synthetic)")
    parser.add_argument("--out", required=True, help="folder for the runs and table.md")
    parser.add_argument(
        "--experiments", help=f"comma-separated subset (default: all of {', '.join(TABLE1)})"
    )
    cli.add_overrides(parser, "override applied to every experiment")
    args = parser.parse_args(argv)
    with cli.user_errors():
        names = tuple(args.experiments.split(",")) if args.experiments else None
        table = run_paper(args.out, data=args.data, names=names, overrides=args.overrides)
        print(table.read_text())


if __name__ == "__main__":
    main()
