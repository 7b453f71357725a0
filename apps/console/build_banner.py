"""The banner signed-in users see while `make run` is still bringing up the local regions and object storage
(apps/core/build_status.py): what is building, for how long, and how long the last measured build took.
Nothing once everything is up, and nothing in production (no status file)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from apps.core import build_status as bs
from apps.core.build_status import human_duration

# Polled while the bring-up runs; the partial stops polling once it is finished, failed or interrupted.
POLL_TRIGGER = "every 5s"


@dataclass(frozen=True)
class PieceLine:
    name: str
    label: str
    state: str
    text: str


@dataclass(frozen=True)
class Banner:
    state: str  # building, failed or interrupted
    headline: str
    detail: str
    pieces: tuple[PieceLine, ...]
    log: str

    @property
    def polling(self) -> bool:
        return self.state == "building"


def _piece_text(piece: bs.Piece, now: float) -> str:
    elapsed = piece.elapsed(now)
    if piece.state == bs.CACHED:
        return "already built"
    if piece.state == bs.DONE and elapsed is not None:
        return f"done in {human_duration(elapsed)}"
    if piece.state == bs.FAILED:
        after = f" after {human_duration(elapsed)}" if elapsed is not None else ""
        return f"failed{after}: {piece.error}" if piece.error else f"failed{after}"
    if piece.state == bs.RUNNING and elapsed is not None:
        expected = f" of about {human_duration(piece.expected)}" if piece.expected else ""
        return f"in progress, {human_duration(elapsed)}{expected}"
    return "waiting"


def _progress(status: bs.Status, now: float) -> str:
    elapsed = human_duration(status.elapsed(now))
    left = status.left(now)
    if left is None or status.expected_total is None:
        return f"{elapsed} so far."
    measure = f"the last measured build took {human_duration(status.expected_total)}"
    source = f" ({status.expected_source})" if status.expected_source else ""
    if left <= 0:
        return f"{elapsed} so far, longer than expected: {measure}{source}."
    return f"{elapsed} so far, about {human_duration(left)} left: {measure}{source}."


def banner_for(status: bs.Status | None, now: float | None = None) -> Banner | None:
    if status is None:
        return None
    now = time.time() if now is None else now
    state = status.state()
    if state == "done":
        return None
    pieces = tuple(PieceLine(p.name, p.label, p.state, _piece_text(p, now)) for p in status.pieces)
    if state == "failed":
        failed = status.failed[0]
        headline = f"Setting up this machine failed: {failed.label} did not succeed."
        detail = (
            "Launches in the regions it was bringing up stay pending and object storage may answer 503 until "
            "it works: fix the cause and run `make run` again."
        )
    elif state == "interrupted":
        headline = "Setting up this machine stopped before it finished (`make run` was stopped)."
        detail = (
            "Run `make run` again to finish it; launches in the sandbox's regions wait as pending until then."
        )
    else:
        running = ", ".join(p.label for p in status.running()) or "the next step"
        headline = f"This machine is still setting up its local regions and object storage: {running}."
        detail = (
            f"{_progress(status, now)} Launches are accepted and wait as pending until their region's "
            "cluster is up; object storage answers once its server runs."
        )
    return Banner(state=state, headline=headline, detail=detail, pieces=pieces, log=status.log)


def current_banner() -> Banner | None:
    return banner_for(bs.current())
