"""The prefetching thread: same batches in order, exact resume state, errors, shutdown."""

import threading
import time

import numpy as np
import pytest

from jaxseg.data import formats, pipeline, prefetch


def _batches(source) -> object:
    return iter(pipeline.train_dataset(source, height=16, width=32, batch_size=2, seed=3))


def test_same_batches_in_order_and_the_state_of_the_last_one_handed_out(tiny_data):
    source = formats.open_dataset(str(tiny_data)).split("train")
    plain = _batches(source)
    expected, states = [], []
    for _ in range(5):
        expected.append(next(plain))
        states.append(plain.get_state())

    reader = _batches(source)
    with prefetch.Prefetcher(reader, size=2) as ahead:
        got = []
        for i in range(3):
            got.append(next(ahead))
            # The thread has read further, but the resume point is the batch handed out.
            assert ahead.get_state() == states[i]
        got += [next(ahead), next(ahead)]
    for batch, reference in zip(got, expected, strict=True):
        np.testing.assert_array_equal(batch["image"], reference["image"])
        np.testing.assert_array_equal(batch["label"], reference["label"])
    assert not ahead.alive


def test_an_exception_comes_out_at_its_place_and_ends_the_thread():
    def failing():
        yield 1
        yield 2
        raise OSError("broken image file x.jpg")

    ahead = prefetch.Prefetcher(failing(), size=4)
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(OSError, match="broken image file x.jpg"):
        next(ahead)
    assert not ahead.alive
    with pytest.raises(StopIteration):
        next(ahead)


def test_a_finite_iterator_ends_and_close_stops_a_blocked_reader():
    assert list(prefetch.Prefetcher(iter(range(5)), size=2)) == [0, 1, 2, 3, 4]

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    before = set(threading.enumerate())
    ahead = prefetch.Prefetcher(endless(), size=2)
    assert next(ahead) == 0
    time.sleep(0.2)  # The reader fills the queue and blocks on it.
    ahead.close()
    assert not ahead.alive
    assert not [t for t in set(threading.enumerate()) - before if t.name == "jaxseg-prefetch"]
    # One handed out, two queued, at most one more read while blocked on the full queue.
    assert 3 <= len(produced) <= 4


def test_size_below_one_is_refused():
    with pytest.raises(ValueError, match="prefetch size must be >= 1, got 0"):
        prefetch.Prefetcher(iter([]), size=0)
