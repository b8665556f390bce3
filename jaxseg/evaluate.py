"""Evaluate a trained run on a split:
`python -m jaxseg.evaluate --workdir DIR [--data PATH] [--split val] [--set key=value ...]`.

Writes `eval_{split}.json` (the results record of `jaxseg.results`) into the workdir and
prints the metrics.
"""

from jaxseg import cli, evaluation, results


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.evaluate", "Evaluate a trained jaxseg run on a data split.")
    parser.add_argument("--workdir", required=True, help="folder of a run of jaxseg.train")
    parser.add_argument(
        "--data", help=f"dataset to evaluate on (default: the run's own); {cli.DATA_HELP}"
    )
    parser.add_argument("--split", default="val", help="split name (default: val)")
    cli.add_overrides(
        parser, "override a value of the run's config, e.g. --set data.eval_batch_size=8"
    )
    args = parser.parse_args(argv)
    with cli.user_errors():
        record = evaluation.evaluate_run(
            args.workdir, data=args.data, split=args.split, overrides=args.overrides
        )
        print(results.summary(record))


if __name__ == "__main__":
    main()
