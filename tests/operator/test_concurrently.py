"""Calls sent alongside a block: they overlap it, the block is left only when they are done, and errors are
not lost (the block's own first, else the first call's)."""

from __future__ import annotations

import threading

import pytest

from apps.operator import concurrently

WAIT = 10.0  # bound for a broken implementation, not a performance assertion


def test_the_calls_run_while_the_block_does() -> None:
    started = threading.Event()
    release = threading.Event()
    finished: list[str] = []

    def call(name: str) -> None:
        started.set()
        assert release.wait(WAIT)
        finished.append(name)

    with concurrently.calls(call, ["secret"]):
        assert started.wait(WAIT)  # sequential calls would still be waiting to start
        assert finished == []
        release.set()
    assert finished == ["secret"]  # the block is left only after the call


def test_an_error_of_a_call_is_raised_after_the_block() -> None:
    ran: list[str] = []

    def call(name: str) -> None:
        if name == "bad":
            raise LookupError(name)
        ran.append(name)

    with pytest.raises(LookupError, match="bad"), concurrently.calls(call, ["good", "bad"]):
        ran.append("block")
    assert sorted(ran) == ["block", "good"]


def test_the_blocks_own_error_wins() -> None:
    def call(name: str) -> None:
        raise LookupError(name)

    with pytest.raises(KeyError), concurrently.calls(call, ["secret"]):
        raise KeyError("block")


def test_nothing_to_send_needs_no_thread() -> None:
    with concurrently.calls(lambda item: None, []):
        pass


def test_a_forked_process_gets_a_pool_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    first = concurrently._executor()
    assert concurrently._executor() is first
    monkeypatch.setattr(concurrently.os, "getpid", lambda: -1)  # what a forked child sees: another pid
    assert concurrently._executor() is not first
