"""The one place that reports progress: a tqdm bar, the run's metrics.jsonl and the same
records as TensorBoard events (written with tensorboardX, without TensorFlow)."""

import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm

from jaxseg.files import to_json, write_atomic


def is_main_process() -> bool:
    return jax.process_index() == 0


class MetricsLog:
    """Appends one JSON object per line; on resume drops records past the restored step.

    Each record's numbers also go to TensorBoard event files next to it, tagged by their
    keys ({class: IoU} dicts as `KEY/CLASS`, spaces as "_"); on resume the events past the
    restored step are purged (TensorBoard's purge step).
    """

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.enabled = is_main_process()
        self.events = None
        if self.enabled:
            purge = None if resume_step is None else resume_step + 1
            self.events = SummaryWriter(str(self.path.parent), purge_step=purge)
        if self.enabled and self.path.exists():
            records = read_metrics(self.path)
            if resume_step is not None:
                records = [r for r in records if r.get("step", 0) <= resume_step]
            else:
                records = []
            # Atomic: a run killed while rewriting keeps the records.
            write_atomic("".join(to_json(r) + "\n" for r in records).encode(), self.path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(to_json(record) + "\n")
            for tag, value in _scalars(record).items():
                self.events.add_scalar(tag, value, record["step"])

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An [H, W, 3] uint8 image as a TensorBoard image event."""
        if self.enabled:
            self.events.add_image(tag, image, step, dataformats="HWC")
            self.events.flush()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()


def _scalars(record: dict) -> dict[str, float]:
    """The finite numbers of a record by tag (not its step and epoch)."""
    flat = {}
    for key, value in record.items():
        if key in ("step", "epoch"):
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for name, number in items:
            if isinstance(number, int | float) and not isinstance(number, bool):
                if math.isfinite(number):
                    # TensorBoard tags hold no spaces ("traffic sign" -> traffic_sign).
                    tag = key if name is None else f"{key}/{name.replace(' ', '_')}"
                    flat[tag] = float(number)
    return flat


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
