"""orbax checkpoints of a run: the train state plus JSON metadata (data iterator, epoch,
early-stopping state). `latest/` keeps the newest two, `best/` the best by val mIoU.

orbax writes each step into a temporary folder and renames it when complete, so a run
killed while saving leaves the previous checkpoint intact.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


class Checkpoints:
    """Saves and restores `state` pytrees with their JSON `meta` under `directory`."""

    def __init__(self, directory: str | Path):
        directory = Path(directory).absolute()
        self.latest = _manager(directory / "latest", max_to_keep=2)
        self.best = _manager(directory / "best", max_to_keep=1)

    def save(self, step: int, state, meta: dict, *, best: bool = False) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.latest.save(step, args=args, force=True)
        if best:
            self.best.save(step, args=args, force=True)

    def restore(self, template, *, which: str = "latest") -> tuple | None:
        """Restores (state, meta) of the newest step of `which`, or None if there is none.

        `template` gives the tree structure, shapes, dtypes and shardings to restore into.
        """
        manager = getattr(self, which)
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
        self.latest.close()
        self.best.close()
