"""grain pipelines: source -> decode -> transforms -> batches with static shapes.

Training batches come from a shuffled, repeated `MapDataset` whose order is a pure function
of the seed (a new permutation each epoch), read through an iterator whose state can be
checkpointed and restored mid-epoch. Evaluation keeps every example: the last batch is
padded and a `mask` marks the real examples.
"""

import functools
from collections.abc import Iterator

import grain
import numpy as np
from absl import flags

from jaxseg.data import augment as augment_lib
from jaxseg.data import sources, transforms


def _load_resized(example: sources.Example, height: int, width: int) -> dict:
    return transforms.resize(sources.load_example(example), height, width)


def train_dataset(
    source: sources.ExampleSource,
    *,
    height: int,
    width: int,
    batch_size: int,
    seed: int,
    augment: augment_lib.Augmentation | None = None,
    workers: int = 0,
) -> grain.IterDataset:
    """Endless training batches {"image": [B,H,W,3] f32, "label": [B,H,W] i32}.

    Augmentations run after `repeat`, so each epoch draws new ones; their randomness is a
    function of the seed and the position in the stream, hence restored with the iterator.
    Iterate with `iter(...)`; the iterator's `get_state()` / `set_state()` give exact resume.
    """
    if len(source) < batch_size:
        raise ValueError(f"{source.description}: {len(source)} examples < batch size {batch_size}")
    dataset = (
        grain.MapDataset.source(source)
        .seed(seed)
        .shuffle()
        .repeat()
        .map(functools.partial(_load_resized, height=height, width=width))
    )
    if augment is not None:
        dataset = dataset.random_map(augment)
    dataset = (
        dataset.map(transforms.to_model_input)
        .batch(batch_size, drop_remainder=True)
        .to_iter_dataset()
    )
    if workers > 0:
        # grain's workers read absl flags; a library caller may never have parsed them.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return dataset


def _prepare_eval(example: sources.Example, height: int, width: int) -> dict:
    """Image resized to the model's input size; label kept at its own resolution (SPEC 4)."""
    decoded = sources.load_example(example)
    model_input = transforms.to_model_input(transforms.resize(decoded, height, width))
    return {**model_input, "label": decoded["label"].astype(np.int32)}


def _stack(examples: list[dict], batch_size: int) -> dict:
    count = len(examples)
    examples = examples + [examples[-1]] * (batch_size - count)
    batch = {key: np.stack([e[key] for e in examples]) for key in ("image", "label")}
    batch["mask"] = np.arange(batch_size) < count
    return batch


def eval_batches(
    source: sources.ExampleSource, *, height: int, width: int, batch_size: int
) -> Iterator[dict]:
    """Every example once as full batches {"image", "label", "mask" [B] bool of real ones}.

    Labels keep their native resolution, so predictions are scored at the label's size;
    examples are batched with others of the same label size (IDD mixes sizes).
    """
    dataset = grain.MapDataset.source(source).map(
        functools.partial(_prepare_eval, height=height, width=width)
    )
    pending: dict[tuple, list] = {}
    for example in dataset:
        group = pending.setdefault(example["label"].shape, [])
        group.append(example)
        if len(group) == batch_size:
            yield _stack(group, batch_size)
            group.clear()
    for group in pending.values():
        if group:
            yield _stack(group, batch_size)
