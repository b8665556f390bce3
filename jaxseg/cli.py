"""What every command-line tool shares: argument parsing and one-line errors for user mistakes."""

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from jaxseg.errors import JaxsegError


def parser(description: str) -> argparse.ArgumentParser:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Library loggers (absl, orbax) are chatty at INFO; keep ours.
    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return argparse.ArgumentParser(description=description)


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set key=value` (repeatable) into `args.overrides`."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns a user mistake (JaxsegError, a missing file) into `error: ...` and exit code 2."""
    try:
        yield
    except (JaxsegError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
