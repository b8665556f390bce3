"""Training batches kept in memory: the same stream as decoding every epoch, decoded once."""

import numpy as np

from jaxseg.data import augment, formats, pipeline, sources, transforms


def _stream(source, keep_in_memory: bool, steps: int) -> list[dict]:
    dataset = pipeline.train_dataset(
        source,
        height=16,
        width=32,
        batch_size=4,
        seed=5,
        augment=augment.build_augment({"hflip": {"p": 0.5}, "rotate": {"angle": 10.0}}),
        keep_in_memory=keep_in_memory,
    )
    batches = iter(dataset)
    return [next(batches) for _ in range(steps)]


def test_kept_examples_give_the_same_batches_and_are_decoded_once(tiny_data, monkeypatch):
    source = formats.open_dataset(str(tiny_data)).split("train")
    decoded = []
    load_example = sources.load_example

    def counting_load(example, label_space):
        decoded.append(example.image_path)
        return load_example(example, label_space)

    monkeypatch.setattr(sources, "load_example", counting_load)
    steps = 3 * len(source) // 4  # Three epochs of 4-image batches.
    # The kept stream first: grain's read-ahead threads of a stream go on decoding after
    # the test stops reading it.
    kept = _stream(source, keep_in_memory=True, steps=steps)
    assert sorted(decoded) == sorted(example.image_path for example in source)
    decoded.clear()
    expected = _stream(source, keep_in_memory=False, steps=steps)
    assert len(decoded) >= 3 * len(source)
    for batch, reference in zip(kept, expected, strict=True):
        np.testing.assert_array_equal(batch["image"], reference["image"])
        np.testing.assert_array_equal(batch["label"], reference["label"])


def test_progressive_sizes_resize_the_epochs_up_to_each_entry(tiny_data):
    source = formats.open_dataset(str(tiny_data)).split("train")
    steps_per_epoch = len(source) // 4

    def stream(progressive) -> list[dict]:
        dataset = pipeline.train_dataset(
            source, height=16, width=32, batch_size=4, seed=5, progressive=progressive
        )
        batches = iter(dataset)
        return [next(batches) for _ in range(3 * steps_per_epoch)]

    full = stream(())
    progressive = stream([[1, 8, 16], [2, 16, 16]])
    shapes = [batch["image"].shape[1:3] for batch in progressive]
    assert (
        shapes
        == [(8, 16)] * steps_per_epoch + [(16, 16)] * steps_per_epoch + [(16, 32)] * steps_per_epoch
    )
    # Each example is the full-size one resized further (bilinear image, nearest label).
    for batch, reference in zip(progressive, full, strict=True):
        height, width = batch["image"].shape[1:3]
        for i in range(4):
            expected = transforms.resize(
                {"image": reference["image"][i], "label": reference["label"][i].astype(np.uint8)},
                height,
                width,
            )
            np.testing.assert_array_equal(batch["image"][i], expected["image"])
            np.testing.assert_array_equal(batch["label"][i], expected["label"])
