"""Data parallelism over any number of devices and hosts, in two interchangeable modes.

- "sharding" (default): one `jax.jit` over a `Mesh(devices, ("data",))`; batches are sharded
  along `data`, the train state is replicated (or, with `shard_params`, sharded over `data`
  FSDP-style). XLA sees the global batch, so plain BatchNorm computes global statistics and
  gradients need no explicit all-reduce.
- "pmap": the same step bodies under `jax.pmap` with `axis_name="data"`: gradients, metrics
  and BatchNorm statistics are averaged with `lax.pmean` over the device axis.

Both keep the train state between steps as global `jax.Array`s on the same mesh: in pmap mode
each leaf gets a leading device axis (one replica per device). Checkpoints always hold the
unreplicated state (`checkpoint_state`), so they do not depend on the mode or device count.

Every process passes its own rows of each global batch (batch size / process count); the
global batch is their concatenation in process order.
"""

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxseg.errors import ConfigError

DATA_AXIS = "data"
MODES = ("sharding", "pmap")


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process run; call before anything touches the devices.

    Arguments left None are auto-detected by `jax.distributed.initialize` (SLURM, Open MPI,
    Kubernetes/TPU environments; `JAX_COORDINATOR_ADDRESS`).
    """
    # The CPU backend has no cross-process collectives unless told to use gloo; GPU and
    # TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"jax.distributed.initialize: {e}") from None


def distributed_settings(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: dict = os.environ,
) -> dict:
    """The multi-host settings given (keyword arguments of `initialize_distributed`), each
    from its argument, else from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` or
    `JAX_PROCESS_ID`; empty for a single-process run."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    names = {
        "coordinator": ("JAX_COORDINATOR_ADDRESS", str),
        "num_processes": ("JAX_NUM_PROCESSES", int),
        "process_id": ("JAX_PROCESS_ID", int),
    }
    settings = {}
    for key, (name, kind) in names.items():
        if given[key] is not None:
            settings[key] = given[key]
        elif environ.get(name):
            try:
                settings[key] = kind(environ[name])
            except ValueError:
                raise ConfigError(f"{name}={environ[name]!r} is not an integer") from None
    return settings


def data_mesh(devices: list | None = None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def select_devices(num_devices: int = 0) -> list:
    """The first `num_devices` devices of every process (0: all), in process order.

    Every process contributes as many devices, so each feeds the same share of a batch.
    """
    count = jax.local_device_count()
    if num_devices < 0 or num_devices > count:
        raise ConfigError(f"parallel.num_devices={num_devices}; this process has {count} devices")
    per_process = num_devices or count
    by_process: dict[int, list] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    return [d for p in sorted(by_process) for d in by_process[p][:per_process]]


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def fsdp_sharding(shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    """Shards an array's largest dimension that divides over the `data` axis (else none)."""
    devices = mesh.shape[DATA_AXIS]
    candidates = [i for i, size in enumerate(shape) if size % devices == 0 and size >= devices]
    if not candidates:
        return replicated(mesh)
    axis = max(candidates, key=lambda i: shape[i])
    spec = [None] * len(shape)
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def put_global(value, sharding: NamedSharding) -> jax.Array:
    """A global array with `sharding` from a value every process holds in full."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "data.batch_size") -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ConfigError(
            f"{what}={batch_size} does not divide over {devices} devices; "
            f"use a multiple of {devices} (or set parallel.num_devices)"
        )


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places a host batch {"image", "label", ...} as global arrays sharded on `data`.

    Each process passes its own slice of the global batch.
    """
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }


def to_host(tree):
    """Numpy values of replicated global arrays, read from this process's first device."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """What differs between the modes: where state and batches live, how steps compile.

    The training loop is the same for both: `place_state` once, then per step
    `place_batch` and the compiled step, `checkpoint_state` before saving.
    """

    mode: str  # "sharding" or "pmap".
    mesh: Mesh
    shard_params: bool = False  # Sharding mode: state sharded over `data` (FSDP-style).

    @property
    def axis_name(self) -> str | None:
        """The mapped axis the step bodies and BatchNorm reduce over (pmap only)."""
        return DATA_AXIS if self.mode == "pmap" else None

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def state_shardings(self, state):
        """Shardings of the unreplicated (checkpoint) state."""
        if self.shard_params:
            return jax.tree.map(lambda x: fsdp_sharding(np.shape(x), self.mesh), state)
        return jax.tree.map(lambda _: replicated(self.mesh), state)

    def unreplicated(self, state):
        """A process-local state (every process holding the same values) as global arrays
        with `state_shardings`: the form checkpoints save and restore."""
        return jax.tree.map(put_global, jax.device_get(state), self.state_shardings(state))

    def place_state(self, state):
        """The unreplicated global state as the compiled steps take it: itself, or in pmap
        mode one replica per device along a leading axis."""
        if self.mode == "pmap":
            devices, sharding = self.num_devices, batch_sharded(self.mesh)
            return jax.tree.map(
                lambda x: put_global(np.broadcast_to(x, (devices, *np.shape(x))), sharding),
                to_host(state),
            )
        return state

    def checkpoint_state(self, state):
        """The inverse of `place_state`: the unreplicated global state."""
        if self.mode == "pmap":
            return self.unreplicated(self.fetch(state))
        return state

    def fetch(self, outputs):
        """Numpy values of the compiled steps' outputs (all replicated; pmap: one replica)."""
        host = to_host(outputs)
        return jax.tree.map(lambda x: x[0], host) if self.mode == "pmap" else host

    def host_state(self, state):
        """The unreplicated state as numpy arrays on every process (a collective: every
        process must call it), for process-local work such as drawing the report."""
        return multihost_utils.process_allgather(self.checkpoint_state(state), tiled=True)

    def place_batch(self, batch: dict) -> dict:
        """This process's part of a global batch as global arrays (pmap: [devices, B/d, ...])."""
        if self.mode == "pmap":
            local = len(self.mesh.local_devices)
            batch = {
                key: np.reshape(value, (local, -1, *np.shape(value)[1:]))
                for key, value in batch.items()
            }
        return shard_batch(batch, self.mesh)

    def compile(
        self, train_step: Callable, eval_step: Callable, state
    ) -> tuple[Callable, Callable]:
        """Compiled (train_step, eval_step) of step bodies taking an `axis_name` keyword.

        `state` is the placed state (its shardings are those of the jitted step's state).
        """
        if self.mode == "pmap":

            def pmapped(step, **kwargs):
                return jax.pmap(
                    functools.partial(step, axis_name=DATA_AXIS),
                    axis_name=DATA_AXIS,
                    devices=self.mesh.devices.flatten().tolist(),
                    **kwargs,
                )

            return pmapped(train_step, donate_argnums=(0,)), pmapped(eval_step)
        state_sharding = jax.tree.map(lambda x: x.sharding, state)
        repl, sharded = replicated(self.mesh), batch_sharded(self.mesh)
        jitted_train_step = jax.jit(
            train_step,
            in_shardings=(state_sharding, sharded),
            out_shardings=(state_sharding, repl),
            donate_argnums=(0,),
        )
        jitted_eval_step = jax.jit(
            eval_step, in_shardings=(state_sharding, sharded), out_shardings=repl
        )
        return jitted_train_step, jitted_eval_step


def create(
    mode: str = "sharding", num_devices: int = 0, shard_params: bool = False
) -> DataParallel:
    """The data-parallel setup of `config.parallel`; raises ConfigError on bad values."""
    if mode not in MODES:
        raise ConfigError(f"parallel.mode {mode!r}; valid: {', '.join(MODES)}")
    if shard_params and mode != "sharding":
        raise ConfigError("parallel.shard_params needs parallel.mode=sharding")
    return DataParallel(mode, data_mesh(select_devices(num_devices)), shard_params)
