"""grain pipelines: source -> decode -> transforms -> batches with static shapes.

Training batches come from a shuffled, repeated `MapDataset` whose order is a pure function
of the seed (a new permutation each epoch), read through an iterator whose state can be
checkpointed and restored mid-epoch. Evaluation keeps every example: the last batch is
padded and a `mask` marks the real examples.

In a multi-process run every process reads its own part (`shard`: process index and count)
of each global batch; together they see each example once per epoch, in the same global
batches as a single process would.
"""

import functools
import logging
import threading
from collections.abc import Iterator, Sequence

import grain
import numpy as np
from absl import flags

from jaxseg.data import augment as augment_lib
from jaxseg.data import sources, transforms
from jaxseg.errors import DataError


def file_of(example: sources.Example | sources.EncodedExample) -> str:
    """The image file (or record) an example comes from."""
    return example.image_path if isinstance(example, sources.Example) else example.origin


def _skip(error: DataError, example, skipped: list | None) -> None:
    """Logs a bad example and lists its file in `skipped` (once)."""
    logging.warning("skipped %s", error)
    if skipped is not None and file_of(example) not in skipped:
        skipped.append(file_of(example))


def _load_at(
    index: int, *, source, height: int, width: int, on_error: str, skipped: list | None
) -> dict:
    """Example `index` decoded and resized. With on_error="skip", a bad file is logged and
    the next readable example of the source takes its place: batches keep their shape and
    the stream stays a function of the seed (so resuming stays exact)."""
    for offset in range(len(source)):
        example = source[(index + offset) % len(source)]
        try:
            decoded = sources.load_example(example, source.label_space)
        except DataError as e:
            if on_error == "raise":
                raise
            _skip(e, example, skipped)
        else:
            return transforms.resize(decoded, height, width)
    raise DataError(f"{source.description}: no readable example")


class _KeptInMemory:
    """`load(index)` whose results are kept: each example is decoded and resized once per
    process (or worker), not once per epoch. grain's read-ahead threads may ask for an
    index again while it is being decoded (the buffer can span epochs), hence a lock per
    index. Augmentations never write into their input, so the kept arrays are shared."""

    def __init__(self, load):
        self._load = load
        self._examples: dict[int, dict] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Worker processes start with nothing kept (locks do not pickle).
        return {"load": self._load}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["load"])

    def __call__(self, index: int) -> dict:
        with self._locks_lock:
            lock = self._locks.setdefault(index, threading.Lock())
        with lock:
            if index not in self._examples:
                self._examples[index] = self._load(index)
        return self._examples[index]


def epoch_size(
    epoch: int, progressive: Sequence[Sequence[int]], height: int, width: int
) -> tuple[int, int]:
    """The training input size of `epoch` (from 1): that of the first [last_epoch, height,
    width] entry of `progressive` with `epoch <= last_epoch`, else (height, width)."""
    for last_epoch, entry_height, entry_width in progressive:
        if epoch <= last_epoch:
            return entry_height, entry_width
    return height, width


def _load_sized(
    position: int, index: int, *, load, epoch_length: int, progressive, height: int, width: int
) -> dict:
    """Example `index` resized to the input size of the epoch that the stream's `position`
    falls in."""
    size = epoch_size(position // epoch_length + 1, progressive, height, width)
    return transforms.resize(load(index), *size)


def train_dataset(
    source: sources.Source,
    *,
    height: int,
    width: int,
    batch_size: int,
    seed: int,
    augment: augment_lib.Augmentation | None = None,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    on_error: str = "raise",
    skipped: list | None = None,
    keep_in_memory: bool = False,
    progressive: Sequence[Sequence[int]] = (),
) -> grain.IterDataset:
    """Endless training batches {"image": [B,H,W,3] uint8, "label": [B,H,W] i32}.

    Augmentations run after `repeat`, so each epoch draws new ones; their randomness is a
    function of the seed and the position in the stream, hence restored with the iterator.
    Iterate with `iter(...)`; the iterator's `get_state()` / `set_state()` give exact resume.

    Args:
      batch_size: the global batch size B; each of `count` processes gets B / count.
      shard: (index, count) of this process, which reads rows [index * B / count, ...) of
        every global batch: the global batches are the same, in the same order, for any
        process count, and so is the iterator state (the number of batches read).
      on_error: "raise" (a DataError naming the file) or "skip" (see `_load_at`).
      skipped: gets the files skipped; only those decoded in this process (workers=0),
        as worker processes log theirs but cannot append here.
      keep_in_memory: keep the decoded, resized examples (before augmentation) after
        their first epoch; for a split that fits in memory (H * W * 4 bytes an example).
      progressive: progressive resizing, [last_epoch, height, width] entries in increasing
        epoch order: epochs up to an entry's `last_epoch` (from 1) are resized further to
        its size; later epochs are at `height` x `width`. The batch shape changes at those
        epochs, so a jitted step compiles once per size.
    """
    index, count = shard
    if len(source) < batch_size:
        raise ValueError(f"{source.description}: {len(source)} examples < batch size {batch_size}")
    # Shuffling indices gives the order shuffling the source would; the index lets a
    # skipped example be replaced.
    load = functools.partial(
        _load_at, source=source, height=height, width=width, on_error=on_error, skipped=skipped
    )
    if keep_in_memory:
        load = _KeptInMemory(load)
    load_sized = functools.partial(
        _load_sized,
        load=load,
        epoch_length=len(source),
        progressive=progressive,
        height=height,
        width=width,
    )
    dataset = grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat()
    dataset = dataset.map_with_index(load_sized)
    if augment is not None:
        dataset = dataset.random_map(augment)
    # Local batches are consecutive slices of the stream, and global batch s is local
    # batches s * count ... s * count + count - 1. Sliced after the lazy maps, so each
    # process decodes only its own examples, and augmentations keep the random draw of
    # their position in the global stream.
    dataset = (
        dataset.map(transforms.to_model_input)
        .batch(batch_size // count, drop_remainder=True)[index::count]
        .to_iter_dataset()
    )
    if workers > 0:
        # grain's workers read absl flags; a library caller may never have parsed them.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return dataset


def _prepare_eval(
    example: sources.Example,
    label_space,
    height: int | None,
    width: int | None,
    on_error: str = "raise",
    skipped: list | None = None,
) -> dict | None:
    """Image resized to the model's input size (kept at its own size when `height` is
    None); label kept at its own resolution, where the metrics are computed. None for a bad
    file under on_error="skip"."""
    try:
        decoded = sources.load_example(example, label_space)
    except DataError as e:
        if on_error == "raise":
            raise
        _skip(e, example, skipped)
        return None
    if height is not None:
        decoded = {**transforms.resize(decoded, height, width), "label": decoded["label"]}
    return {**transforms.to_model_input(decoded), "label": decoded["label"].astype(np.int32)}


def _stack(examples: list[dict], batch_size: int) -> dict:
    count = len(examples)
    examples = examples + [examples[-1]] * (batch_size - count)
    batch = {key: np.stack([e[key] for e in examples]) for key in ("image", "label")}
    batch["mask"] = np.arange(batch_size) < count
    return batch


def eval_batches(
    source: sources.Source,
    *,
    height: int | None,
    width: int | None,
    batch_size: int,
    shard: tuple[int, int] = (0, 1),
    on_error: str = "raise",
    skipped: list | None = None,
) -> Iterator[dict]:
    """Every example once as full batches {"image", "label", "mask" [B] bool of real ones}.

    Labels keep their native resolution, so predictions are scored at the label's size;
    examples are batched with others of the same image and label size (IDD mixes sizes).
    Images are resized to (height, width), or keep their own size when both are None.

    Args:
      batch_size: the global batch size B.
      shard: (index, count) of this process, which gets rows [index * B / count, ...) of
        each global batch. Every process decodes the whole split to group it by label size
        the same way (simple; evaluation splits are small).
      on_error: "raise" (a DataError naming the file) or "skip" (leave the example out,
        log it and append its file to `skipped`).
    """
    index, count = shard
    rows = slice(index * batch_size // count, (index + 1) * batch_size // count)
    prepare = functools.partial(
        _prepare_eval,
        label_space=source.label_space,
        height=height,
        width=width,
        on_error=on_error,
        skipped=skipped,
    )
    pending: dict[tuple, list] = {}
    for example in map(prepare, (source[i] for i in range(len(source)))):
        if example is None:
            continue
        group = pending.setdefault((example["image"].shape, example["label"].shape), [])
        group.append(example)
        if len(group) == batch_size:
            yield _rows(_stack(group, batch_size), rows)
            group.clear()
    for group in pending.values():
        if group:
            yield _rows(_stack(group, batch_size), rows)


def _rows(batch: dict, rows: slice) -> dict:
    return {key: value[rows] for key, value in batch.items()}
