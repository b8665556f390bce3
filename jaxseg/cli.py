"""What every command-line tool shares: argument parsing and one-line errors for user mistakes."""

import argparse
import contextlib
import logging
import os
import platform
import shlex
import signal
import sys
from collections.abc import Iterator

from jaxseg.discovery import experiment_names
from jaxseg.errors import Interrupted, JaxsegError

DATA_HELP = (
    '"synthetic" (the built-in data), an IDD root (leftImg8bit/, gtFine/), a Cityscapes '
    "root, a folder of train/val/test.csv pair lists, or a TFDS data directory written by "
    "`jaxseg.data.prepare --tfds`"
)


def parser(module: str, description: str) -> argparse.ArgumentParser:
    """An argument parser whose usage line reads `python -m MODULE`; sets up logging."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Library loggers (absl, orbax) are chatty at INFO; keep ours.
    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # ONNX export warns about every untyped shape constant it skips; nothing to act on.
    for name in ("jax2onnx", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description)


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set key=value` (repeatable) into `args.overrides`."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_experiment(parser: argparse.ArgumentParser) -> None:
    """`--experiment NAME` or `--config FILE` into `args.experiment` (a name or a path)."""
    group = parser.add_mutually_exclusive_group(required=True)
    names = ", ".join(experiment_names()) or "none found"
    group.add_argument("--experiment", help=f"an experiment of the experiments/ folder: {names}")
    group.add_argument(
        "--config", dest="experiment", metavar="FILE", help="an experiment file anywhere (.py)"
    )


def command_line() -> str:
    """The command this process runs, as `python -m MODULE ARGS` to run it again."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name if spec is not None else sys.argv[0]
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns a user mistake (JaxsegError, a missing file) into `error: ...` and exit code 2,
    and a training run stopped by a signal into how to resume and exit code 128 + signal."""
    try:
        yield
    except (JaxsegError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(
            f"{signal.Signals(e.signum).name}: stopped at step {e.step}, checkpoint saved in "
            f"{e.workdir}; resume with: {command_line()}",
            file=sys.stderr,
        )
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def reexec_with_huge_pages(module: str) -> None:
    """Restarts ``python -m module`` with glibc malloc backing large blocks by huge pages.

    XLA's CPU runtime allocates its temporaries afresh at every execution, and glibc serves
    blocks over 32 MiB by mmap and unmaps them when freed, so every step faults its working
    set in again 4 KiB at a time: FCN 256x512 batch 2 took ~100k page faults and 0.18 s of
    kernel time per 0.36 s jaxseg step. ``glibc.malloc.hugetlb=1`` makes malloc advise
    transparent huge pages (2 MiB faults) for such blocks: 1.2k faults and 0.29 s per step;
    torch's step did not change (a benchmark's frameworks share the process, so its
    comparison stays fair); 3 epochs of the synthetic baseline took 42 s instead of 48-49 s.
    glibc reads tunables only at start-up, hence the re-exec. A GLIBC_TUNABLES already
    in the environment (even empty) is left alone: ``GLIBC_TUNABLES= python -m ...``
    measures without. Call it before importing jax or torch: the restart then costs
    milliseconds, not a second import of both (``jaxseg.train --help``: 16.6 s -> 10.0 s).
    """
    if "GLIBC_TUNABLES" in os.environ or platform.libc_ver()[0] != "glibc":
        return
    os.environ["GLIBC_TUNABLES"] = HUGE_PAGES_TUNABLE
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])
