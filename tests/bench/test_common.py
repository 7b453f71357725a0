"""bench/common.py's pure parts: waiting for the load average to settle, and the size list of a curve."""

from __future__ import annotations

import argparse

import pytest

from bench import common


class FakeLoad:
    """A load average that falls by `step` each time the wait sleeps, on a clock the sleep advances."""

    def __init__(self, start: float, step: float):
        self.load, self.step, self.now, self.sleeps = start, step, 0.0, 0

    def read(self) -> list[float]:
        return [self.load, self.load, self.load]

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        self.load -= self.step

    def clock(self) -> float:
        return self.now


def test_load_settled_below_the_core_count_only() -> None:
    assert common.load_settled([1.9, 5.0, 5.0], 2)
    assert not common.load_settled([2.0, 0.1, 0.1], 2)
    assert common.load_settled([], 2)  # no /proc/loadavg: nothing to wait for


def test_settle_load_waits_until_the_one_minute_load_is_below_the_cores() -> None:
    fake, lines = FakeLoad(start=4.5, step=1.0), list[str]()
    out = common.settle_load(
        lines.append, max_seconds=300, cores=2, read=fake.read, sleep=fake.sleep, clock=fake.clock
    )
    assert out["settled"] and out["load_average"][0] < 2
    assert fake.sleeps == 3  # 4.5 -> 3.5 -> 2.5 -> 1.5
    assert out["waited_seconds"] == 3 * common.SETTLE_POLL_SECONDS
    assert "4.5" in lines[0] and "1.5" in lines[-1]  # printed before and after


def test_settle_load_gives_up_after_the_maximum_and_says_so() -> None:
    fake, lines = FakeLoad(start=9.0, step=0.0), list[str]()
    out = common.settle_load(
        lines.append, max_seconds=12, cores=2, read=fake.read, sleep=fake.sleep, clock=fake.clock
    )
    assert not out["settled"]
    assert fake.sleeps == 3  # 0, 5, 10 < 12; 15 is past it
    assert "not settled" in lines[-1]


def test_settle_load_reads_its_maximum_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BENCH_SETTLE_SECONDS", "0")
    fake = FakeLoad(start=9.0, step=0.0)
    out = common.settle_load(lambda _: None, cores=2, read=fake.read, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == 0 and not out["settled"]


def test_parse_sizes() -> None:
    assert common.parse_sizes("1000,5000,20000") == [1000, 5000, 20000]
    for bad in ("", "10,x", "0,10", "50,20", "20,20"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.parse_sizes(bad)
