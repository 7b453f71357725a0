"""Objects read or applied a moment ago, for the pod watch: recording that a pod became Ready needs its
Service's node port and its node's address, and reading both for every pod made the watch fall behind when
pods became Ready by the thousand (a fresh operator's first resync; docs/benchmarks.md). Nodes and node
ports change rarely; an entry lives `TTL_SECONDS`, and deleting a Service forgets it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

TTL_SECONDS = 60.0

Key = tuple[str, str, str, str]  # cluster, kind, namespace ("" for nodes), name


class Recent:
    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._items: dict[Key, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(key)
        if found is None or self.clock() - found[1] >= self.ttl:
            return None
        return found[0]

    def put(self, key: Key, obj: dict[str, Any]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._items) > 50_000:
                self._items = {k: v for k, v in self._items.items() if now - v[1] < self.ttl}
            self._items[key] = (obj, now)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._items.pop(key, None)


cache = Recent()
