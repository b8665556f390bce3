"""Size a run before starting it:
`python -m jaxseg.plan (--experiment NAME | --config FILE) [--set key=value ...]
[--device-memory 80GB] [--json FILE]`.

Prints the parameter count, GFLOPs per train step and per image, the train step's peak
memory at the config's batch size and the largest batch that fits the device memory, all
from the train step XLA compiles for one device (`jaxseg.planning`); nothing is run, and
torch is not needed.
"""

import json
from pathlib import Path

from jaxseg import cli, planning
from jaxseg.config import load_config


def main(argv: list[str] | None = None) -> dict:
    parser = cli.parser("jaxseg.plan", "Parameters, FLOPs and peak memory of a train step.")
    cli.add_experiment(parser)
    cli.add_overrides(parser, "override a config value, e.g. --set data.batch_size=8")
    parser.add_argument(
        "--device-memory",
        help="memory of one device, e.g. 80GB or 16GiB (default: this device's, on a CPU "
        "the machine's memory)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with cli.user_errors():
        memory = planning.parse_bytes(args.device_memory) if args.device_memory else None
        config = load_config(args.experiment, overrides=args.overrides)
        record = planning.make_plan(config, memory).record()
        print(json.dumps(record, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
