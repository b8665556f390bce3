"""A background thread that reads batches ahead, so decoding overlaps the train step.

With no worker processes (``data.workers=0``, the right choice on a 2-core machine where
workers only compete with XLA) the training loop used to decode and augment each batch
between steps: the README's main command spent a third of its time there. Pillow's decoding
and resizing and most NumPy work release the GIL, and so does XLA while a step runs, so one
thread reading ahead lets the two overlap without the start-up and copying of processes.

The reader keeps grain's exact resume: it snapshots the wrapped iterator's state after each
batch it reads, and `get_state()` returns the snapshot of the last batch handed out, not of
the batches still waiting in the queue.
"""

import queue
import threading
from collections.abc import Iterator
from typing import Any

_END = object()  # Put by the reader when the wrapped iterator is exhausted.


class _Failure:
    """An exception raised by the wrapped iterator, handed to the consumer to re-raise."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterates `iterator` (a grain DatasetIterator or any iterator) `size` items ahead.

    Items come out in the wrapped iterator's order; an exception it raises is re-raised by
    `next()` at its place in the stream. `close()` (or leaving a ``with`` block) stops and
    joins the thread. The wrapped iterator's `set_state()` must be called before wrapping.
    """

    def __init__(self, iterator: Iterator, size: int = 2):
        if size < 1:
            raise ValueError(f"prefetch size must be >= 1, got {size}")
        self._iterator = iterator
        self._has_state = hasattr(iterator, "get_state")
        self._state = iterator.get_state() if self._has_state else None
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._read, name="jaxseg-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Blocks until `item` is queued or the prefetcher is closed (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                item = next(self._iterator)
            except StopIteration:
                self._put(_END)
                return
            except BaseException as error:  # Re-raised in the consumer's thread.
                self._put(_Failure(error))
                return
            state = self._iterator.get_state() if self._has_state else None
            if not self._put((item, state)):
                return

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        entry = self._queue.get()
        if entry is _END or isinstance(entry, _Failure):
            self._done = True
            self._thread.join()
            if entry is _END:
                raise StopIteration
            raise entry.error
        item, self._state = entry
        return item

    def get_state(self) -> Any:
        """The wrapped iterator's state after the last item returned by `next()`."""
        return self._state

    def close(self) -> None:
        """Stops the reader thread (it finishes the item it is reading) and joins it."""
        self._stop.set()
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
