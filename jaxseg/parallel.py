"""Data parallelism: a device mesh with one `data` axis, batches sharded along it.

Under `jax.jit` with these shardings XLA sees the global batch, so plain BatchNorm already
computes global batch statistics and gradients need no explicit all-reduce.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: list | None = None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(f"batch size {batch_size} does not divide over {devices} devices")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places a host batch {"image", "label", ...} as global arrays sharded on `data`.

    Each process passes its own slice of the global batch.
    """
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }
