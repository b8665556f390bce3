"""Each framework alone in its own process, alternating: the fair ratio on a shared CPU.

    python -m benchmarks.train_step --model unet --processes 3

Timing both frameworks in one process makes each disturb the other: PyTorch's OpenMP pool
and XLA's CPU pool share the cores and the caches, and U-Net's interleaved ratio read 1.47x
where the two timed alone, alternating, read 1.00x. ``--processes N`` therefore runs the
benchmark's own command N rounds, each round ``--only jax`` then ``--only torch`` in fresh
processes, so a change of load on the machine hits both alike. Each process reports its
median step; the table's "s/step median" is the median of those per-process medians (its
"min-max" their range), and the ratio line comes last.
"""

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import common

FRAMEWORKS = ("jax", "torch")
# Flags of the parent that a child must not repeat: it times once and reports by file.
PARENT_FLAGS = ("--processes", "--results", "--json", "--only")


def child_argv(argv: Sequence[str], only: str, json_path: str) -> list[str]:
    """The parent's flags without `PARENT_FLAGS`, plus ``--only`` and ``--json``."""
    kept, skip_value = [], False
    for item in argv:
        if skip_value:
            skip_value = False
            continue
        name = item.split("=", 1)[0]
        if name in PARENT_FLAGS:
            skip_value = "=" not in item
            continue
        kept.append(item)
    return [*kept, f"--only={only}", f"--json={json_path}"]


def run_child(module: str, argv: list[str]) -> None:
    """Runs ``python -m module argv``; a failing child stops the run with its error."""
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{module} {' '.join(argv)} failed (exit {done.returncode}): {last}")


def combine(results: list[common.Result], rounds: int) -> common.Result:
    """One result from the per-process ones: per framework, the per-process medians."""
    by_name: dict[str, list[common.Row]] = {}
    for result in results:
        for row in result.rows:
            by_name.setdefault(row.framework, []).append(row)
    rows = [
        common.Row(
            name,
            common.Timing([r.timing.median for r in runs]),
            runs[0].memory_mib,
            runs[0].compile_s,
            loss=runs[0].loss,
            max_abs_diff=runs[0].max_abs_diff,
        )
        for name, runs in by_name.items()
    ]
    notes = [
        f"round {i + 1}: "
        + ", ".join(f"{name} {runs[i].timing.median:.4g} s" for name, runs in by_name.items())
        for i in range(rounds)
    ]
    jax_result = next(r for r in results if any(row.framework == common.JAX_ROW for row in r.rows))
    title = (
        f"{jax_result.title.split(';')[0]}; each framework alone in its own process, "
        f"{rounds} rounds alternating {' / '.join(FRAMEWORKS)}; s/step = median of the "
        "per-process medians"
    )
    return common.Result(
        title,
        jax_result.batch,
        jax_result.dtype,
        jax_result.flops,
        rows,
        target=jax_result.target,
        separate=True,
        notes=notes,
    )


def run_separate(
    module: str,
    argv: Sequence[str],
    rounds: int,
    run_fn: Callable[[str, list[str]], None] = run_child,
) -> common.Result:
    """Alternates ``--only jax`` and ``--only torch`` processes of `module` for `rounds`."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(rounds):
            for only in FRAMEWORKS:
                path = Path(folder) / f"{i}_{only}.json"
                run_fn(module, child_argv(argv, only, str(path)))
                results.append(common.result_from_json(json.loads(path.read_text())))
    return combine(results, rounds)
