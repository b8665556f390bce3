"""One process of the multi-process run of test_parallel (not a test itself).

Usage: distributed_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID DATA WORKDIR STEPS
[KEY=VALUE ...]: joins the run, then trains the baseline experiment for STEPS steps.
"""

import sys

from jaxseg import parallel
from jaxseg.config import load_config
from jaxseg.trainer import train_and_evaluate


def main(argv: list[str]) -> None:
    coordinator, num_processes, process_id, data, workdir, steps, *overrides = argv
    parallel.initialize_distributed(coordinator, int(num_processes), int(process_id))
    config = load_config("baseline", data=data, overrides=overrides)
    train_and_evaluate(config, workdir, stop_after_steps=int(steps))


if __name__ == "__main__":
    main(sys.argv[1:])
