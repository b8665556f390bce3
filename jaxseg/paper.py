"""The seed's whole study in one command:
`python -m jaxseg.paper [--data synthetic|PATH] --out DIR [--experiments a,b] [--set k=v]`.

Runs every experiment of the seed's Table 1 in sequence into DIR/NAME (a finished run, one
with results.json, is skipped; an interrupted one resumes), then writes DIR/table.md with
each run beside the seed's published row.
"""

import time
from pathlib import Path

from experiments import EXPERIMENTS
from jaxseg import cli, report, train
from jaxseg.config import load_config

# The seed's Table 1 order; experiments not registered here (yet) are left out.
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
    names = names or tuple(n for n in TABLE1 if n in EXPERIMENTS)
    configs = {name: load_config(name, data=data, overrides=list(overrides)) for name in names}
    for name, config in configs.items():
        workdir = out_dir / name
        if (workdir / "results.json").exists():
            print(f"{name}: finished earlier, skipped")
            continue
        start = time.perf_counter()
        results = train.train_and_evaluate(config, workdir)
        print(
            f"{name}: PA {results['pixel_accuracy']:.4f} mIoU {results['mean_iou']:.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    runs = [(name, report.load_results(out_dir / name / "results.json")) for name in names]
    table_path = out_dir / "table.md"
    table_path.write_text(
        report.results_table(runs) + "\nAll classes:\n\n" + report.results_table(runs, True)
    )
    return table_path


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Run every experiment of the seed's Table 1 and tabulate them.")
    parser.add_argument("--data", help='"synthetic" (default) or an IDD root / CSV folder')
    parser.add_argument("--out", required=True, help="folder for the runs and table.md")
    parser.add_argument("--experiments", help="comma-separated subset (default: all)")
    cli.add_overrides(parser, "override applied to every experiment")
    args = parser.parse_args(argv)
    with cli.user_errors():
        names = tuple(args.experiments.split(",")) if args.experiments else None
        table = run_paper(args.out, data=args.data, names=names, overrides=args.overrides)
        print(table.read_text())


if __name__ == "__main__":
    cli.reexec_with_huge_pages("jaxseg.paper")
    main()
