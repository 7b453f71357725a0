"""Liveness heartbeats of the processes that serve no HTTP of their own: worker, beat and operator.

Each touches the file named by HEARTBEAT_FILE whenever its main loop goes round (at least every
INTERVAL_SECONDS): the worker's event loop (a timer of `WorkerHeartbeat`, config/celery.py), beat's tick
(apps/core/beat.py) and the operator's supervising loop, which touches it only while every region thread
is alive and going round (apps/operator/operator_loop.py). Unset: no file (development, tests).

The chart's exec probes run `python -m apps.core.heartbeat FILE MAX_AGE_SECONDS`, which exits 0 when FILE
was touched within MAX_AGE_SECONDS and 1 otherwise (missing included). It imports neither Django nor
the project's settings, so a probe costs one interpreter start.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "HEARTBEAT_FILE"
INTERVAL_SECONDS = 10.0

_failed: set[str] = set()


def path() -> str:
    return os.environ.get(ENV, "")


def beat(target: str | None = None) -> None:
    """Touch the heartbeat file (HEARTBEAT_FILE unless `target`); nothing when none is configured. A file
    that cannot be written is logged once, never raised: the probe then restarts the process, which is
    what a broken /tmp deserves, but the loop itself must not die of it."""
    name = path() if target is None else target
    if not name:
        return
    try:
        Path(name).touch()
    except OSError as exc:
        if name not in _failed:
            _failed.add(name)
            logger.warning("heartbeat: cannot touch %s: %s", name, exc)
    else:
        _failed.discard(name)


def age(target: str, now: float | None = None) -> float | None:
    """Seconds since `target` was last touched; None when it does not exist."""
    try:
        modified = os.stat(target).st_mtime
    except OSError:
        return None
    return max(0.0, (time.time() if now is None else now) - modified)


def main(argv: Sequence[str]) -> int:
    """`python -m apps.core.heartbeat FILE MAX_AGE_SECONDS`: the exit status of a liveness probe."""
    if len(argv) != 2:
        print("usage: python -m apps.core.heartbeat FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    target, max_age = argv[0], float(argv[1])
    seconds = age(target)
    if seconds is None:
        print(f"no heartbeat: {target} does not exist", file=sys.stderr)
        return 1
    if seconds > max_age:
        print(f"stale heartbeat: {target} is {seconds:.0f}s old (at most {max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
