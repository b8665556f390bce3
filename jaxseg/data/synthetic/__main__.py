"""`python -m jaxseg.data.synthetic --out DIR [--train N ... --layout idd|cityscapes]`."""

import time

from jaxseg import cli
from jaxseg.data.synthetic.class_sets import CLASS_SETS
from jaxseg.data.synthetic.file_layout import FILE_LAYOUTS
from jaxseg.data.synthetic.params import DEFAULT_PARAMS, DEFAULT_WORKERS
from jaxseg.data.synthetic.writer import generate

# The valid names of the string parameters, for the help. Not argparse `choices`: a bad name
# is a one-line error from `generate`, like other bad values.
_NAMES = {"classes": CLASS_SETS, "layout": FILE_LAYOUTS}


def main(argv: list[str] | None = None) -> None:
    """Parses the arguments, writes the dataset and prints a one-line summary."""
    parser = cli.parser(
        "jaxseg.data.synthetic", "Write the built-in synthetic driving-scene dataset."
    )
    parser.add_argument("--out", required=True, help="a new or empty folder")
    for key, default in DEFAULT_PARAMS.items():
        names = f"{' or '.join(_NAMES[key])}; " if key in _NAMES else ""
        parser.add_argument(
            f"--{key}", type=type(default), default=default, help=f"{names}default: {default}"
        )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"processes; default: {DEFAULT_WORKERS}",
    )
    args = parser.parse_args(argv)
    params = {key: getattr(args, key) for key in DEFAULT_PARAMS}
    with cli.user_errors():
        start = time.perf_counter()
        root = generate(args.out, **params, workers=args.workers)
        seconds = time.perf_counter() - start
    print(
        f"{root}: {params['train']} train, {params['val']} val, {params['test']} test images, "
        f"{params['height']}x{params['width']}, seed {params['seed']}, "
        f"{params['classes']} classes, {params['layout']} layout, {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
