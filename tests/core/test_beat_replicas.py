"""Two real `celery beat` processes and a worker: each scheduled run is sent once, also across a SIGKILL.

The beats run tests/support/beat_settings.py: one test-only task every INTERVAL seconds on a queue of this
test, which the worker runs; the task appends the run it was sent for (the `gpucloud_beat_*` headers of
apps/core/beat.py) to a Redis list. Runs form a chain: each names the run before it, so a run sent twice
shows as two runs with the same predecessor, and a lost run as a broken link.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.support.processes import PYTHON, Process, Processes, wait_for

INTERVAL = 2.0
LEASE = 4.0
# A SIGKILLed leader's lease expires at most LEASE after its last renewal, and a standby tries every third
# of a lease (jittered down, never up): the takeover is asserted within LEASE + LEASE/3 + MARGIN, the margin
# for the test's 0.2 s polling and a loaded 2-core machine. Measured: 4.1-5.2 s in 4 runs (load above 4).
MARGIN = 2.0
TAKEOVER_BOUND = LEASE + LEASE / 3 + MARGIN
GRACE = 30.0  # the wait's timeout only: a hung process fails with the logs rather than hanging the run


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Processes, redis.Redis, dict[str, str]]]:
    run = uuid.uuid4().hex[:10]
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.beat_settings",
        "BEAT_TEST_QUEUE": f"test-beat-{run}",
        "BEAT_TEST_TICKS_KEY": f"test-beat-{run}:ticks",
        "BEAT_TEST_INTERVAL": str(INTERVAL),
        "BEAT_LEASE_SECONDS": str(int(LEASE)),
        "BEAT_KEY_PREFIX": f"test-beat-{run}",
    }
    processes = Processes(tmp_path, env=env)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield processes, client, env
    processes.stop_all()
    client.delete(
        env["BEAT_TEST_TICKS_KEY"], f"{env['BEAT_KEY_PREFIX']}:leader", f"{env['BEAT_KEY_PREFIX']}:last-run"
    )
    client.delete(env["BEAT_TEST_QUEUE"])


def start_beat(processes: Processes, name: str) -> Process:
    return processes.start(
        name,
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel=INFO",
            f"--pidfile={processes.directory / name}.pid",
        ],
    )


def leader(client: redis.Redis, env: dict[str, str]) -> str | None:
    value = client.get(f"{env['BEAT_KEY_PREFIX']}:leader")
    return value.decode() if value else None


def runs(client: redis.Redis, env: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(env["BEAT_TEST_TICKS_KEY"], 0, -1)]


def sent_by(process: Process) -> str:
    return f"{process.pid}@"


def assert_each_run_once(recorded: list[dict[str, Any]]) -> None:
    ordered = sorted(recorded, key=lambda r: r["run_at"])
    assert len({r["run_at"] for r in ordered}) == len(ordered), f"a run was sent twice: {ordered}"
    assert len({r["previous_run"] for r in ordered}) == len(ordered), f"two runs after one: {ordered}"
    for before, after in itertools.pairwise(ordered):
        assert after["previous_run"] == before["run_at"], f"a run is missing between {before} and {after}"


def test_two_beats_send_each_run_once_and_the_standby_takes_over(
    setup: tuple[Processes, redis.Redis, dict[str, str]],
) -> None:
    processes, client, env = setup
    processes.start(
        "worker",
        [
            PYTHON, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
            f"--queues={env['BEAT_TEST_QUEUE']}", "--include=tests.support.beat_tasks",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
    )  # fmt: skip
    first = start_beat(processes, "beat-1")
    wait_for(
        lambda: (leader(client, env) or "").startswith(sent_by(first)),
        what="beat-1 to lead",
        processes=processes,
    )
    second = start_beat(processes, "beat-2")
    wait_for(lambda: "beat: Starting" in second.output(), what="beat-2 to start", processes=processes)

    # Both run; only the leader sends, every INTERVAL, each run once.
    wait_for(lambda: len(runs(client, env)) >= 5, what="five runs", processes=processes)
    before = runs(client, env)
    assert {r["sender"].split("@")[0] for r in before} == {str(first.pid)}
    assert_each_run_once(before)
    assert second.alive() and (leader(client, env) or "").startswith(sent_by(first))

    # SIGKILL the leader right after a run (so not in the middle of a send): its lease expires, beat-2
    # takes the schedule over from the last recorded run.
    count = len(runs(client, env))
    wait_for(lambda: len(runs(client, env)) > count, what="another run", processes=processes)
    first.kill()
    killed_at = time.monotonic()
    wait_for(
        lambda: (leader(client, env) or "").startswith(sent_by(second)),
        what="beat-2 to take over",
        timeout=TAKEOVER_BOUND + GRACE,
        processes=processes,
    )
    took_over = time.monotonic() - killed_at
    print(f"beat takeover after SIGKILL: {took_over:.2f}s (bound {TAKEOVER_BOUND:.1f}s)")
    assert took_over <= TAKEOVER_BOUND, f"took over after {took_over:.1f}s, bound {TAKEOVER_BOUND:.1f}s"
    after_kill = len(runs(client, env))
    wait_for(lambda: len(runs(client, env)) >= after_kill + 4, what="runs from beat-2", processes=processes)

    recorded = runs(client, env)
    senders = [r["sender"].split("@")[0] for r in sorted(recorded, key=lambda r: r["run_at"])]
    assert senders[0] == str(first.pid) and senders[-1] == str(second.pid)
    assert_each_run_once(recorded)  # no run sent twice, none lost, across the handover
    assert "beat: leading" in second.output()
    assert second.terminate() == 0  # a clean stop releases the lease at once
    assert leader(client, env) is None
