"""The status file of `make run`'s background bring-up (scripts/bring_up.py writes it, the console reads it).

`make run` serves the console within a few minutes of a fresh clone and builds the Go pieces (the sandbox's
Kubernetes binaries, SeaweedFS) behind it. While it does, this file says what is building, since when, and
how long the last measured build took, so the console can show a banner, a launch can say why it waits, and
object storage can say it is not ready yet instead of failing. Production has no such file
(settings.BUILD_STATUS_FILE is None) and every reader here then answers "nothing is building".

Standard library only at import time: the bring-up script imports this module without Django.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1

# Piece states.
WAITING, RUNNING, DONE, CACHED, FAILED = "waiting", "running", "done", "cached", "failed"
FINISHED = frozenset({DONE, CACHED})

# The pieces a reader cares about by name.
REGIONS = "regions"  # the regions are connected to the sandbox's clusters (the last step of that chain)
OBJECT_STORAGE = "s3"  # the local S3 server answers


@dataclass(frozen=True)
class Piece:
    name: str
    label: str
    state: str
    started: float | None = None  # epoch seconds
    finished: float | None = None
    expected: float | None = None  # seconds, from the last measured build
    error: str = ""

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return max(0.0, (self.finished or now) - self.started)


@dataclass(frozen=True)
class Status:
    started: float
    pid: int | None
    pieces: tuple[Piece, ...]
    regions: tuple[str, ...] = ()  # the regions the sandbox brings up
    expected_total: float | None = None  # seconds from start until everything is up
    # Seconds from start until a piece is done (REGIONS, OBJECT_STORAGE), by the same measure.
    expected_by: dict[str, float] = field(default_factory=dict)
    expected_source: str = ""
    log: str = ""
    finished: float | None = None

    # --- what the whole bring-up is doing ---

    def piece(self, name: str) -> Piece | None:
        return next((p for p in self.pieces if p.name == name), None)

    def alive(self) -> bool:
        """The bring-up process still runs (a status written by a process that is gone is interrupted)."""
        if self.finished is not None:
            return False
        return self.pid is not None and pid_alive(self.pid)

    @property
    def failed(self) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.state == FAILED)

    @property
    def complete(self) -> bool:
        return all(p.state in FINISHED for p in self.pieces)

    def state(self) -> str:
        """building, failed, interrupted or done."""
        if self.failed:
            return "failed"
        if self.complete:
            return "done"
        return "building" if self.alive() else "interrupted"

    def elapsed(self, now: float | None = None) -> float:
        return max(0.0, (self.finished or (now if now is not None else time.time())) - self.started)

    def left(self, now: float | None = None, until: str | None = None) -> float | None:
        """Seconds left until everything (or the piece `until`) is up by the last measured build; None
        without a measure, 0 once past it."""
        expected = self.expected_by.get(until) if until else self.expected_total
        if expected is None:
            return None
        return max(0.0, expected - self.elapsed(now))

    def running(self) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.state == RUNNING)

    # --- questions the app asks ---

    def waits_for(self, name: str) -> bool:
        """The piece is part of this bring-up, not finished, and on its way (nothing failed or stopped)."""
        piece = self.piece(name)
        return piece is not None and piece.state in (WAITING, RUNNING) and self.state() == "building"

    def region_note(self, slug: str, now: float | None = None) -> str:
        """Why a launch in `slug` waits, when this bring-up is what will connect it; "" otherwise."""
        if slug not in self.regions or not self.waits_for(REGIONS):
            return ""
        left = self._left(now, REGIONS)
        return f"Waiting for region {slug}'s cluster to come up (the local sandbox is building{left})."

    def object_storage_note(self, now: float | None = None) -> str:
        if not self.waits_for(OBJECT_STORAGE):
            return ""
        left = self._left(now, OBJECT_STORAGE)
        return f"Object storage is not ready yet: its local server is still being built{left}."

    def _left(self, now: float | None, until: str | None = None) -> str:
        left = self.left(now, until)
        if left is None:
            return ""
        if left <= 0:
            return ", taking longer than the last measured build"
        return f", about {human_duration(left)} left"


def human_duration(seconds: float) -> str:
    """For people: 45 s, 3 min 5 s, 12 min (whole minutes from ten on)."""
    total = max(0, round(seconds))
    if total >= 600:
        return f"{round(total / 60)} min"
    minutes, secs = divmod(total, 60)
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse(data: Any) -> Status | None:
    """A Status from the file's JSON; None when it is not one (a reader never fails on a bad file)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or _number(data.get("started")) is None:
        return None
    pieces = []
    for raw in data.get("pieces") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            return None
        pieces.append(
            Piece(
                name=raw["name"],
                label=str(raw.get("label") or raw["name"]),
                state=str(raw.get("state") or WAITING),
                started=_number(raw.get("started")),
                finished=_number(raw.get("finished")),
                expected=_number(raw.get("expected")),
                error=str(raw.get("error") or ""),
            )
        )
    pid = data.get("pid")
    expected_by = data.get("expected_by")
    return Status(
        started=float(data["started"]),
        pid=pid if isinstance(pid, int) else None,
        pieces=tuple(pieces),
        regions=tuple(str(r) for r in data.get("regions") or []),
        expected_total=_number(data.get("expected_total")),
        expected_by={
            str(k): float(v)
            for k, v in (expected_by.items() if isinstance(expected_by, dict) else ())
            if _number(v) is not None
        },
        expected_source=str(data.get("expected_source") or ""),
        log=str(data.get("log") or ""),
        finished=_number(data.get("finished")),
    )


def read(path: str | os.PathLike[str] | None) -> Status | None:
    if not path:
        return None
    try:
        return parse(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def write(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"schema": SCHEMA, **data}, indent=1), encoding="utf-8")
    os.replace(tmp, target)


def current() -> Status | None:
    """This installation's bring-up status (settings.BUILD_STATUS_FILE), or None (production, or none yet)."""
    from django.conf import settings

    return read(getattr(settings, "BUILD_STATUS_FILE", None))


def region_note(slug: str) -> str:
    status = current()
    return status.region_note(slug) if status else ""


def object_storage_note() -> str:
    status = current()
    return status.object_storage_note() if status else ""
