"""Sizing a run before it starts: parameters, FLOPs and peak memory of the train step.

Every figure comes from the train step XLA compiles for the config, on one device, without
running it or allocating its buffers: the state is built abstractly (`jax.eval_shape`) and
the step is lowered on shapes only. FLOPs are XLA's cost analysis of the compiled step (on
the CPU, of the convolution formulations that ``kernels="cpu"`` picks). The
peak is the compiled step's memory analysis: arguments (state and batch) + outputs - the
outputs aliased to donated arguments (the new state reuses the old one's buffers) +
temporaries.
"""

import dataclasses
import functools
import math
import os
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg import state, steps
from jaxseg.data import formats
from jaxseg.data.labels import LabelSpace, get_label_space
from jaxseg.errors import ConfigError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
_MAX_SEARCH_COMPILES = 8  # Compiles to correct the linear estimate of the largest batch.


@dataclasses.dataclass(frozen=True)
class Plan:
    """The train step's figures at the config's batch size, and the largest batch that fits."""

    params: int  # Parameter count, frozen parameters included.
    gflops_per_step: float
    gflops_per_image: float
    peak_memory_bytes: int  # At the config's batch size.
    # Largest batch whose peak fits `device_memory_bytes` (0: none does; None: not searched).
    max_batch: int | None
    batch_size: int
    device_memory_bytes: int

    def record(self) -> dict:
        """The `python -m jaxseg.plan --json` record."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        line = (
            f"plan: {self.params:,} parameters, {self.gflops_per_step:.1f} GFLOP per train step "
            f"({self.gflops_per_image:.1f} per image), peak {self.peak_memory_bytes / 2**30:.2f} "
            f"GiB at batch {self.batch_size}"
        )
        if self.max_batch is None:
            return line
        return (
            f"{line}; largest batch in {self.device_memory_bytes / 2**30:.1f} GiB: {self.max_batch}"
        )


def parse_bytes(text: str) -> int:
    """ "80GB" -> 80e9, "16GiB" -> 16 * 2**30, "512MB", "1e9" (bytes).

    Raises:
      ConfigError: not a positive size with a known unit.
    """
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"device memory {text!r}: expected a size such as 80GB, 16GiB or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def default_device_memory() -> int:
    """The first device's memory limit; on a CPU the machine's physical memory."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def label_space(config: ml_collections.ConfigDict) -> LabelSpace:
    """The config's label space, without reading (or generating) any data when named."""
    if config.data.labels != "auto":
        return get_label_space(config.data.labels)
    if config.data.source == "synthetic":
        return get_label_space("idd_level3")  # The synthetic data's format (IDD).
    return formats.open_dataset(config.data.source).label_space


def compile_train_step(
    config: ml_collections.ConfigDict, space: LabelSpace, batch_size: int
) -> tuple[jax.stages.Compiled, state.TrainState]:
    """(the config's train step compiled for one device at `batch_size`, the abstract
    state it takes). Nothing is initialised or run."""
    data = config.data
    image_shape = (batch_size, data.height, data.width, 3)
    abstract_state = jax.eval_shape(
        lambda: state.create(config, space, image_shape=image_shape).state
    )
    outputs = state.num_outputs(config, space)
    # Class weights change no shapes or FLOPs; ones stand in for counted ones.
    weights = None if config.loss.class_weights == "none" else jnp.ones(outputs)
    loss_fn = steps.bind_loss(config, space.num_classes, weights)
    batch = {
        "image": jax.ShapeDtypeStruct(image_shape, jnp.uint8),
        "label": jax.ShapeDtypeStruct(image_shape[:3], jnp.int32),
    }
    jitted = jax.jit(functools.partial(steps.train_step, loss_fn=loss_fn), donate_argnums=(0,))
    return jitted.lower(abstract_state, batch).compile(), abstract_state


def peak_bytes(compiled: jax.stages.Compiled) -> int:
    """Arguments + outputs - donated aliases + temporaries of a compiled step."""
    memory = compiled.memory_analysis()
    return (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
    )


def flops(compiled: jax.stages.Compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # Older jax: one dict per computation.
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def largest_batch(peak_at: Callable[[int], int], memory: int, start: int) -> int:
    """The largest batch b with `peak_at(b) <= memory` (0 if batch 1 does not fit).

    The peak grows about linearly with the batch: the peaks at `start` and `2 * start` give
    an estimate, which `peak_at` of its neighbours then corrects (each call is a compile).
    """
    per_image = max((peak_at(2 * start) - peak_at(start)) / start, 1.0)
    fixed = peak_at(start) - start * per_image
    batch = max(math.floor((memory - fixed) / per_image), 1)
    for _ in range(_MAX_SEARCH_COMPILES):
        if peak_at(batch) > memory:
            batch -= 1
            if batch == 0:
                return 0
        elif peak_at(batch + 1) <= memory:
            batch += 1
        else:
            return batch
    return batch


def make_plan(
    config: ml_collections.ConfigDict,
    device_memory: int | None = None,
    *,
    find_max_batch: bool = True,
) -> Plan:
    """The config's plan: figures at `data.batch_size` (one compile) and, with
    `find_max_batch` (two or more compiles), the largest batch in `device_memory` bytes
    (default: `default_device_memory()`)."""
    space = label_space(config)
    batch_size = config.data.batch_size
    compiled, abstract_state = compile_train_step(config, space, batch_size)
    memory = device_memory or default_device_memory()
    known = {batch_size: peak_bytes(compiled)}

    def peak_at(batch: int) -> int:
        if batch not in known:
            known[batch] = peak_bytes(compile_train_step(config, space, batch)[0])
        return known[batch]

    gflops = flops(compiled) / 1e9
    return Plan(
        params=sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract_state.params)),
        gflops_per_step=gflops,
        gflops_per_image=gflops / batch_size,
        peak_memory_bytes=known[batch_size],
        max_batch=largest_batch(peak_at, memory, batch_size) if find_max_batch else None,
        batch_size=batch_size,
        device_memory_bytes=memory,
    )
