"""Pod events handed from the watch to several workers, newest event per instance only.

The watch reads events far faster than one thread can record them: when a fresh operator's first resync
creates thousands of pods, each pod's ADDED, scheduled and Running events used to wait in one line behind
everyone else's. Here, as in client-go's workqueue:

- events are keyed (the instance a pod belongs to); a key waiting in the queue keeps its place and takes the
  newest event, so a backlog shrinks to one event per pod. Handling is level-triggered (the newest pod is the
  whole truth), so the events skipped were nothing the handler needed;
- a key is handed to one worker at a time, so one instance's events are never handled out of order or
  concurrently; an event for a key being handled waits until that worker is done, then queues again;
- the queue holds at most one event per key, so its size is bounded by the number of pods.

`run_all` is the resync's bounded concurrency: a cold start with thousands of pending instances creates
their pods `workers` at a time, not one after another (operator_loop.RegionOperator.resync).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Event = tuple[Any, ...]  # the arguments of one call of the handler


class KeyedQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: OrderedDict[str, Event] = OrderedDict()
        self._busy: set[str] = set()
        self._parked: dict[str, Event] = {}  # newest event of a key being handled

    def put(self, key: str, event: Event) -> None:
        with self._cond:
            if key in self._busy:
                self._parked[key] = event
            else:
                self._ready[key] = event  # a waiting key keeps its place
                self._cond.notify()

    def get(self, stop: threading.Event, poll: float = 0.5) -> tuple[str, Event] | None:
        """The oldest waiting key and its newest event, now marked busy; None once `stop` is set."""
        with self._cond:
            while not self._ready:
                if stop.is_set():
                    return None
                self._cond.wait(poll)
            key, event = self._ready.popitem(last=False)
            self._busy.add(key)
            return key, event

    def done(self, key: str) -> None:
        with self._cond:
            self._busy.discard(key)
            parked = self._parked.pop(key, None)
            if parked is not None:
                self._ready[key] = parked
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._parked)


def work(queue: KeyedQueue, handle: Callable[..., None], stop: threading.Event) -> None:
    """One worker: until `stop`, take a key's newest event and handle it (`handle(*event)`, which must not
    raise)."""
    while (taken := queue.get(stop)) is not None:
        key, event = taken
        try:
            handle(*event)
        finally:
            queue.done(key)


def run_all(
    items: Iterable[Any],
    handle: Callable[[Any], None],
    *,
    workers: int,
    name: str,
    should_stop: Callable[[], bool] = lambda: False,
    on_exit: Callable[[], None] = lambda: None,
) -> None:
    """Handle every item of `items` on `workers` threads, at most that many at once, and return when all are
    handled or `should_stop()` (checked before each item). `items` is read under a lock, so it may be a
    generator that loads lazily; `handle` must not raise. Each thread calls `on_exit` once as it ends (to
    hand its database connection back)."""
    lock = threading.Lock()
    source: Iterator[Any] = iter(items)
    done = object()

    def work() -> None:
        try:
            while not should_stop():
                with lock:
                    item = next(source, done)
                if item is done:
                    return
                handle(item)
        finally:
            on_exit()

    threads = [threading.Thread(target=work, name=f"{name}-{i}", daemon=True) for i in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
