"""orbax checkpoints of a run: the train state plus JSON metadata (data iterator, epoch,
early-stopping state). `latest/` keeps the newest two, `best/` the best by val mIoU.

orbax writes each step into a temporary folder and renames it when complete, and deletes
an older step only after the newer one is complete, so a run killed at any moment keeps its
previous checkpoints intact; the temporary folders of a killed run are removed at the next
start. On accelerators the writes are asynchronous (training goes on while orbax writes);
on the CPU they are synchronous, as the writer threads would compete with XLA for the cores.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxseg.errors import WorkdirError


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=jax.default_backend() != "cpu",
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


class Checkpoints:
    """Saves and restores `state` pytrees with their JSON `meta` under `directory`."""

    def __init__(self, directory: str | Path):
        directory = Path(directory).absolute()
        try:
            self.latest = _manager(directory / "latest", max_to_keep=2)
            self.best = _manager(directory / "best", max_to_keep=1)
        except OSError as e:
            raise WorkdirError(f"{directory}: cannot create the checkpoint folders ({e})") from None

    def save(self, step: int, state, meta: dict, *, best: bool = False) -> None:
        """Saves `step` into `best/` (if `best`) and then `latest/`; a step a manager already
        holds (saved before the run was killed, then recomputed identically) is kept.

        `best/` goes first: a run killed between the two writes resumes from the previous
        latest step and recomputes this one, while the other order would resume past an
        improvement that `best/` never received.
        """
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        for manager, wanted in ((self.best, best), (self.latest, True)):
            if wanted and step not in manager.all_steps():
                try:
                    manager.save(step, args=args, force=True)
                except OSError as e:
                    raise WorkdirError(
                        f"{manager.directory}: cannot write the checkpoint of step {step} ({e}); "
                        "the earlier checkpoints are intact"
                    ) from None

    def restore(self, template, *, which: str = "latest") -> tuple | None:
        """Restores (state, meta) of the newest step of `which`, or None if there is none.

        `template` gives the tree structure, shapes, dtypes and shardings to restore into.
        """
        manager = getattr(self, which)
        manager.wait_until_finished()
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.meta

    def close(self) -> None:
        """Waits for writes in flight, then releases the managers."""
        self.latest.close()
        self.best.close()
