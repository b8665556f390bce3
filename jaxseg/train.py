"""Train and evaluate an experiment:
`python -m jaxseg.train (--experiment NAME | --config FILE) [--data synthetic|PATH]
[--workdir DIR] [--set key=value ...]`.

Writes config.json, metrics.jsonl, checkpoints/, results.json and report/ into the workdir
(`jaxseg.trainer`); running the same command again resumes, also after SIGTERM or SIGINT
(a checkpoint at the next step boundary, exit status 143 or 130) or a kill -9 (from the
last complete checkpoint). On several hosts, every host runs the same command with
`--coordinator HOST:PORT --num-processes N --process-id I`.
"""

import logging
from pathlib import Path

from jaxseg import cli

if __name__ == "__main__":
    # Before jax and torch are imported (see the function's docstring).
    cli.reexec_with_huge_pages("jaxseg.train")

from jaxseg import parallel, progress  # noqa: E402
from jaxseg.config import load_config  # noqa: E402
from jaxseg.trainer import train_and_evaluate  # noqa: E402


def _add_multihost(parser) -> None:
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


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.train", "Train and evaluate a jaxseg experiment.")
    cli.add_experiment(parser)
    parser.add_argument("--data", help=cli.DATA_HELP + " (default: the experiment's)")
    parser.add_argument("--workdir", help="output folder (default: runs/EXPERIMENT)")
    cli.add_overrides(parser, "override a config value, e.g. --set train.epochs=3")
    _add_multihost(parser)
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
    main()
