"""Bounded exponential backoff with full jitter, for every loop of the operator that talks to an apiserver.

Each failure doubles the ceiling (base, 2*base, 4*base ... capped); the wait is uniform between half the
ceiling and the ceiling, so replicas that failed together do not retry together. A success resets it.
"""

from __future__ import annotations

import random
import threading


class Backoff:
    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.base, self.cap = base, cap
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  (jitter, not cryptography)

    def wait(self, stop: threading.Event) -> bool:
        """Sleeps the next delay, waking early when `stop` is set; True if stopping."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        self.failures = 0
