"""The keyed work queue between the pod watch and its workers: newest event per key, a key's place kept,
one worker per key at a time, a key's event that arrives while it is handled queued again afterwards."""

from __future__ import annotations

import threading
import time
from typing import Any

from apps.operator.workqueue import KeyedQueue, run_all, work

JOIN_TIMEOUT = 30.0  # bound for a hung worker, not a performance assertion


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def test_a_waiting_key_keeps_its_place_and_takes_the_newest_event() -> None:
    queue, stop = KeyedQueue(), threading.Event()
    queue.put("a", ("ADDED", pod("a1")))
    queue.put("b", ("ADDED", pod("b1")))
    queue.put("a", ("MODIFIED", pod("a2")))
    assert len(queue) == 2
    assert queue.get(stop) == ("a", ("MODIFIED", pod("a2")))
    assert queue.get(stop) == ("b", ("ADDED", pod("b1")))


def test_a_busy_key_is_not_handed_out_again_until_done() -> None:
    queue, stop = KeyedQueue(), threading.Event()
    queue.put("a", ("ADDED", pod("a1")))
    assert queue.get(stop) == ("a", ("ADDED", pod("a1")))
    queue.put("a", ("MODIFIED", pod("a2")))  # arrives while "a" is handled
    queue.put("a", ("MODIFIED", pod("a3")))
    queue.put("b", ("ADDED", pod("b1")))
    assert queue.get(stop) == ("b", ("ADDED", pod("b1")))  # not "a": a worker has it
    stop.set()
    assert queue.get(stop, poll=0.01) is None
    queue.done("a")
    assert queue.get(threading.Event()) == ("a", ("MODIFIED", pod("a3")))


def test_workers_never_handle_one_key_twice_at_once_and_end_on_the_newest_event() -> None:
    queue, stop = KeyedQueue(), threading.Event()
    lock = threading.Lock()
    busy: set[str] = set()
    overlaps: list[str] = []
    last: dict[str, int] = {}
    handled = 0

    def handle(kind: str, obj: dict[str, Any]) -> None:
        nonlocal handled
        key, seq = obj["metadata"]["name"].split(":")
        with lock:
            if key in busy:
                overlaps.append(key)
            busy.add(key)
        time.sleep(0.001)  # long enough for the other workers to try the same key
        with lock:
            busy.discard(key)
            last[key] = int(seq)
            handled += 1

    workers = [threading.Thread(target=work, args=(queue, handle, stop), daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    for seq in range(200):
        for key in "abcde":
            queue.put(key, ("MODIFIED", pod(f"{key}:{seq}")))
    deadline = time.monotonic() + JOIN_TIMEOUT
    while (len(queue) or last != dict.fromkeys("abcde", 199)) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for worker in workers:
        worker.join(JOIN_TIMEOUT)
    assert not overlaps
    assert last == dict.fromkeys("abcde", 199)
    assert handled < 1000  # events that waited behind a newer one were skipped


def test_run_all_handles_every_item_with_at_most_workers_at_once() -> None:
    lock = threading.Lock()
    in_flight, most, handled, exits = [0], [0], [], []

    def handle(item: int) -> None:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.02)  # long enough for the others to start theirs
        with lock:
            in_flight[0] -= 1
            handled.append(item)

    run_all((i for i in range(40)), handle, workers=8, name="test", on_exit=lambda: exits.append(1))
    assert sorted(handled) == list(range(40))
    assert most[0] == 8  # concurrent, and bounded
    assert len(exits) == 8  # each thread handed its resources back once


def test_run_all_stops_between_items_when_asked() -> None:
    handled: list[int] = []
    run_all(range(100), handled.append, workers=2, name="test", should_stop=lambda: len(handled) >= 5)
    assert 5 <= len(handled) < 100
