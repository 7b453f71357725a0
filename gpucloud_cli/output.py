"""Output: aligned tables and key/value blocks for people, JSON for scripts, a spinner on a terminal."""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

Getter = str | Callable[[Any], Any]
Column = tuple[str, Getter]


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else "-"
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def _get(row: Any, getter: Getter) -> Any:
    return getter(row) if callable(getter) else row.get(getter)


def table(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    grid = [[header for header, _ in columns]]
    grid += [[cell(_get(row, getter)) for _, getter in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(widths[i]) for i, text in enumerate(line)).rstrip() for line in grid]
    return "\n".join(lines)


def details(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max((len(key) for key, _ in pairs), default=0)
    return "\n".join(f"{(key + ':').ljust(width + 1)}  {cell(value)}" for key, value in pairs)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def to_json_line(data: Any) -> str:
    """One JSON object on one line (JSON Lines), for streams such as `logs -f --json`."""
    return json.dumps(data, sort_keys=False, default=str)


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return " ".join(p for p in parts if p) or "0s"


def parse_duration(text: str) -> int:
    """Seconds from "90", "90s", "30m", "2h", "1d" or combinations such as "1h30m"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw)
    total, number = 0, ""
    for char in raw:
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    if number or not total:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return total


class Spinner:
    """A progress line on stderr, only when stderr is a terminal: scripts and logs get nothing."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1):
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.text = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def update(self, text: str) -> None:
        self.text = text

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if self._stop.wait(self.interval):
                return
            self.stream.write(f"\r\033[K{frame} {self.text}")
            self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()
