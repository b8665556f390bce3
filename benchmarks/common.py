"""What the benchmark CLIs share: the environment header, step timing, memory, FLOPs, tables.

Timing: a step callable must return only when its work is done (``jax.block_until_ready``,
``torch.cuda.synchronize``). Steps of the frameworks compared are interleaved round by
round, so a change of load on a shared machine hits both alike and their ratio stays fair.
JAX is imported inside the functions that need it: the loader benchmark's worker processes
import this module and should not pay for it.
"""

import dataclasses
import importlib.metadata
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MIB = 2**20

# Dense peak FLOP/s per device kind and compute dtype, for MFU. Hopper SXM: 989 TFLOP/s
# bf16; fp32 matmuls run as TF32 under XLA's and torch's default GPU precision (494 TFLOP/s).
# H200 has H100's compute. No CPU peak is listed: this machine's is not published, so CPU
# rows report achieved GFLOP/s only.
PEAK_FLOPS = {
    ("H100", "bf16"): 989e12,
    ("H100", "fp32"): 494e12,
    ("H200", "bf16"): 989e12,
    ("H200", "fp32"): 494e12,
}


def cpu_name() -> str:
    """The CPU model, e.g. "AMD EPYC 7B13"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def versions(names: Sequence[str]) -> str:
    """ "python 3.11.9, jax 0.10.2, ..." for the installed distributions `names`."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join([f"python {platform.python_version()}", *found])


def accelerator() -> str | None:
    """The JAX accelerator's device kind (e.g. "NVIDIA H100 80GB HBM3"), None on CPU."""
    import jax

    device = jax.devices()[0]
    return None if device.platform == "cpu" else device.device_kind


def header(torch_threads: int | None = None) -> list[str]:
    """Machine, load, versions and thread settings: the lines above every table."""
    device = accelerator() or "no accelerator"
    lines = [
        f"machine: {cpu_name()}, {os.cpu_count()} cores ({platform.system()}), {device}; "
        f"load average {load_average()}",
        "versions: " + versions(("jax", "jaxlib", "flax", "optax", "torch", "torchvision")),
    ]
    threads = f"torch intra-op threads {torch_threads}; " if torch_threads else ""
    lines.append(
        f"threads: XLA CPU pool {os.cpu_count()} (one per core); {threads}"
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(none)'}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '') or '(none)'}"
    )
    return lines


@dataclasses.dataclass
class Timing:
    """Seconds of the timed steps of one framework (warm-up excluded)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> str:
        """min-max of the timed steps."""
        return f"{min(self.seconds):.4g}-{max(self.seconds):.4g}"


def time_interleaved(
    steps: dict[str, Callable[[], object]],
    *,
    min_steps: int,
    max_steps: int,
    budget_s: float,
) -> dict[str, Timing]:
    """Times every step in rounds (one call of each per round) after warm-up elsewhere.

    Runs at least `min_steps` rounds and stops after `max_steps` or once another round
    would pass `budget_s` seconds in all.
    """
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    for done in range(max_steps):
        round_start = time.perf_counter()
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        per_round = time.perf_counter() - round_start
        if done + 1 >= min_steps and elapsed + per_round > budget_s:
            break
    return {name: Timing(s) for name, s in seconds.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every few milliseconds.

    With both frameworks in one process the absolute RSS mixes their buffers, so each is
    measured as the growth over its own first steps (its step's working set, allocator
    caches included; weights and data made before are not counted).
    """

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / MIB


def jax_peak_device_mib() -> float | None:
    """The accelerator's peak bytes in use so far (whole process), None on CPU."""
    import jax

    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use", 0) / MIB


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled JAX function by XLA's cost analysis."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # Older jax returned one dict per computation.
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def peak_flops(dtype: str) -> float | None:
    """The accelerator's dense peak FLOP/s for `dtype` ("fp32"/"bf16"), None if unknown."""
    kind = accelerator()
    if kind is None:
        return None
    for (name, peak_dtype), peak in PEAK_FLOPS.items():
        if name in kind and peak_dtype == dtype:
            return peak
    return None


def throughput_cells(flops: float | None, seconds: float, dtype: str) -> tuple[str, str]:
    """(achieved GFLOP/s, MFU) of a step of `flops` FLOPs taking `seconds`."""
    if not flops:
        return "-", "-"
    achieved = flops / seconds
    peak = peak_flops(dtype)
    return f"{achieved / 1e9:.1f}", "n/a" if peak is None else f"{100 * achieved / peak:.1f}%"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A GitHub markdown table; every cell already formatted (str) or a number."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(headers), rule, *(line(r) for r in cells)]


def append_results(path: str | Path, lines: Sequence[str]) -> None:
    """Appends a block of lines (and a blank line) to a results file."""
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n\n")


@dataclasses.dataclass
class Row:
    """One framework's line of a benchmark table."""

    framework: str
    timing: Timing
    memory_mib: float | None  # Device peak on GPU, RSS growth on CPU (see PeakRSS).
    compile_s: float | None
    loss: float | None = None  # First step's loss (train steps).
    max_abs_diff: float | None = None  # Against the torch eager output (inference).


@dataclasses.dataclass
class Result:
    """A benchmark's rows plus what the table needs around them."""

    title: str
    batch: int
    dtype: str
    flops: float | None  # XLA's count for one jaxseg step.
    rows: list[Row]
    target: float | None = None  # The bound on the JAX / torch eager time ratio.
    separate: bool = False  # Each framework timed alone in its own processes.
    notes: list[str] = dataclasses.field(default_factory=list)  # Lines above the ratios.

    def ratio(self, framework: str, fastest: bool = False) -> float:
        """jaxseg's median (or fastest) step time over `framework`'s."""
        times = {
            r.framework: min(r.timing.seconds) if fastest else r.timing.median for r in self.rows
        }
        return times[JAX_ROW] / times[framework]


JAX_ROW = "jaxseg jit"
TORCH_EAGER_ROW = "torch eager"
TABLE_HEADERS = (
    "framework",
    "s/step median",
    "min-max",
    "images/s",
    "peak mem MiB",
    "compile s",
    "loss / max abs Δ",
    "GFLOP/s",
    "MFU",
)


def _optional(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def result_lines(result: Result) -> list[str]:
    """The title, one table row per framework, and the time ratios, torch eager's last."""
    rows = []
    for row in result.rows:
        median = row.timing.median
        check = row.loss if row.loss is not None else row.max_abs_diff
        gflops, mfu = throughput_cells(result.flops, median, result.dtype)
        rows.append(
            [
                row.framework,
                f"{median:.4g}",
                row.timing.spread,
                f"{result.batch / median:.2f}",
                _optional(row.memory_mib, ".0f"),
                _optional(row.compile_s, ".1f"),
                _optional(check, ".3g"),
                gflops,
                mfu,
            ]
        )
    flops = "-" if result.flops is None else f"{result.flops / 1e9:.1f} GFLOP"
    title = f"{result.title}; XLA cost analysis: {flops} per step"
    lines = [title, *markdown_table(TABLE_HEADERS, rows), *result.notes]
    names = [r.framework for r in result.rows]
    if JAX_ROW not in names or TORCH_EAGER_ROW not in names:
        # `--only`: one framework, nothing to compare with.
        return lines + [
            f"{r.framework} alone: {r.timing.median:.4g} s/step median" for r in result.rows
        ]
    others = [name for name in names if name not in (JAX_ROW, TORCH_EAGER_ROW)]
    how = ", separate processes" if result.separate else ""
    for name in [*others, TORCH_EAGER_ROW]:
        bound = result.target if name == TORCH_EAGER_ROW else None
        target = f" (target <= {bound})" if bound else ""
        # The fastest steps are the least disturbed by other load on a shared machine.
        lines.append(
            f"ratio {JAX_ROW} / {name} time{how}: {result.ratio(name):.2f} median, "
            f"{result.ratio(name, fastest=True):.2f} fastest{target}"
        )
    return lines


def result_to_json(result: Result) -> dict:
    return dataclasses.asdict(result)


def result_from_json(data: dict) -> Result:
    rows = [Row(**{**row, "timing": Timing(**row["timing"])}) for row in data["rows"]]
    return Result(**{**data, "rows": rows})
