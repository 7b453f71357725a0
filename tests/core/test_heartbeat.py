"""Heartbeat files, the liveness of worker and beat (apps/core/heartbeat.py; the operator's in
tests/operator/test_operator_heartbeat.py, the chart's probes in tests/helm/test_chart_render.py)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from apps.core import heartbeat
from apps.core.beat import LeaderScheduler
from config.celery import app as celery_app
from tests.support.processes import PYTHON, Processes, wait_for


def test_beat_touches_the_configured_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "heartbeat"
    monkeypatch.delenv(heartbeat.ENV, raising=False)
    heartbeat.beat()
    assert not target.exists()  # unset: nothing anywhere

    monkeypatch.setenv(heartbeat.ENV, str(target))
    heartbeat.beat()
    assert heartbeat.age(str(target)) is not None
    old = time.time() - 300
    os.utime(target, (old, old))
    assert (heartbeat.age(str(target)) or 0) >= 299
    heartbeat.beat()
    assert (heartbeat.age(str(target)) or 0) < 5


def test_an_unwritable_file_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = str(tmp_path / "missing-directory" / "heartbeat")
    with caplog.at_level(logging.WARNING, logger="apps.core.heartbeat"):
        heartbeat.beat(target)
        heartbeat.beat(target)
    assert len([r for r in caplog.records if "cannot touch" in r.getMessage()]) == 1


def test_the_probe_command_exits_by_the_files_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "heartbeat"
    assert heartbeat.main([str(target), "60"]) == 1
    assert "does not exist" in capsys.readouterr().err
    target.touch()
    assert heartbeat.main([str(target), "60"]) == 0
    old = time.time() - 90
    os.utime(target, (old, old))
    assert heartbeat.main([str(target), "60"]) == 1
    assert "stale heartbeat" in capsys.readouterr().err
    assert heartbeat.main([str(target)]) == 2


# ---- beat ------------------------------------------------------------------------------------------------


@pytest.fixture
def beat_prefix(settings: Any) -> Iterator[str]:
    prefix, broker = f"test-heartbeat-{uuid.uuid4().hex[:8]}", settings.CELERY_BROKER_URL
    settings.BEAT_KEY_PREFIX = prefix
    yield prefix
    client = redis.Redis.from_url(broker)
    client.delete(f"{prefix}:leader", f"{prefix}:last-run")
    client.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("redis_up", [True, False], ids=["standby", "redis-down"])
def test_every_beat_tick_touches_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any, beat_prefix: str, redis_up: bool
) -> None:
    """A standby's tick (another beat leads) and a tick without Redis both touch it: the loop goes round,
    and an outage of Redis alone must not restart beat."""
    target = tmp_path / "heartbeat"
    monkeypatch.setenv(heartbeat.ENV, str(target))
    if redis_up:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.set(f"{beat_prefix}:leader", "another-beat", px=60_000)
        client.close()
    else:
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    scheduler = LeaderScheduler(app=celery_app, lazy=True)
    try:
        assert scheduler.tick() > 0
        assert not scheduler.leading  # it sent nothing
        assert heartbeat.age(str(target)) is not None
    finally:
        scheduler.redis.close()


# ---- worker ----------------------------------------------------------------------------------------------


def test_a_worker_touches_the_heartbeat_from_its_event_loop(tmp_path: Path) -> None:
    """A real prefork worker: the file appears once it consumes, then is touched every interval."""
    target = tmp_path / "heartbeat"
    processes = Processes(tmp_path, env={heartbeat.ENV: str(target)})
    try:
        processes.start(
            "worker",
            [
                PYTHON, "-m", "celery", "-A", "config", "worker", "--concurrency=1", "--loglevel=INFO",
                f"--queues=test-heartbeat-{uuid.uuid4().hex[:8]}",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
        )  # fmt: skip
        wait_for(target.exists, what="the worker's first heartbeat", processes=processes)
        first = target.stat().st_mtime
        wait_for(
            lambda: target.stat().st_mtime > first,
            what="the next heartbeat",
            timeout=heartbeat.INTERVAL_SECONDS * 3,
            processes=processes,
        )
    finally:
        processes.stop_all()
