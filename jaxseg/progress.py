"""The one place that reports progress: a tqdm bar and the run's metrics.jsonl."""

import json
import math
import sys
from pathlib import Path

import jax
from tqdm import tqdm

from jaxseg.files import to_json


def is_main_process() -> bool:
    return jax.process_index() == 0


class MetricsLog:
    """Appends one JSON object per line; on resume drops records past the restored step."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.enabled = is_main_process()
        if self.enabled and self.path.exists():
            records = read_metrics(self.path)
            if resume_step is not None:
                records = [r for r in records if r.get("step", 0) <= resume_step]
            else:
                records = []
            self.path.write_text("".join(to_json(r) + "\n" for r in records))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(to_json(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """Reads metrics.jsonl, skipping a torn last line left by a killed process."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Progress:
    """A progress bar over training steps (or, with `unit="img"`, images) showing the
    postfix values (loss, ...), the rate and the ETA."""

    def __init__(
        self, total: int, initial: int, description: str, unit: str = "step", leave: bool = True
    ):
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit=unit,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not is_main_process(),
            mininterval=1.0,
        )

    def update(self, steps: int, **postfix: float) -> None:
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(
                {
                    k: (f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else v)
                    for k, v in postfix.items()
                },
                refresh=False,
            )

    def write(self, message: str) -> None:
        if is_main_process():
            self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
