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

from jaxseg.data import sources, transforms


def _prepare(example: sources.Example, height: int, width: int) -> dict:
    decoded = sources.load_example(example)
    return transforms.to_model_input(transforms.resize(decoded, height, width))


def train_dataset(
    source: sources.ExampleSource,
    *,
    height: int,
    width: int,
    batch_size: int,
    seed: int,
    workers: int = 0,
) -> grain.IterDataset:
    """Endless training batches {"image": [B,H,W,3] f32, "label": [B,H,W] i32}.

    Iterate with `iter(...)`; the iterator's `get_state()` / `set_state()` give exact resume.
    """
    if len(source) < batch_size:
        raise ValueError(f"{source.description}: {len(source)} examples < batch size {batch_size}")
    prepare = functools.partial(_prepare, height=height, width=width)
    dataset = (
        grain.MapDataset.source(source)
        .seed(seed)
        .shuffle()
        .repeat()
        .map(prepare)
        .batch(batch_size, drop_remainder=True)
        .to_iter_dataset()
    )
    if workers > 0:
        # grain's workers read absl flags; a library caller may never have parsed them.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return dataset


def eval_batches(
    source: sources.ExampleSource, *, height: int, width: int, batch_size: int
) -> Iterator[dict]:
    """Every example once, in order, as full batches with a `mask` [B] bool of real ones."""
    dataset = grain.MapDataset.source(source).map(
        functools.partial(_prepare, height=height, width=width)
    )
    for start in range(0, len(dataset), batch_size):
        examples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        count = len(examples)
        examples += [examples[-1]] * (batch_size - count)
        batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}
        batch["mask"] = np.arange(batch_size) < count
        yield batch
