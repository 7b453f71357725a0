"""The operator's heartbeat file (its liveness probe): touched while every region thread goes round its loop,
also when the region's apiserver is away, and withheld when a region thread died or stalled."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.catalog.models import Region
from apps.core import heartbeat
from apps.operator.operator_loop import Operator, OperatorConfig, RegionOperator
from tests.fixtures.kube import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = OperatorConfig(
    resync_seconds=2.0,
    lock_retry_seconds=0.5,
    watch_timeout_seconds=3,
    heartbeat_seconds=0.1,
    gc_known_tenants_only=True,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "heartbeat"
    monkeypatch.setenv(heartbeat.ENV, str(target))
    return target


@pytest.fixture
def unreachable_region() -> Region:
    """A region whose apiserver refuses every connection: the operator leads it and every pass fails."""
    # A local test cluster: TLS verification may be skipped (check_kubeconfig).
    region = Region.objects.create(slug="away-1", name="AWAY-1", position=9, sandbox=True)
    server = f"https://127.0.0.1:{_closed_port()}"
    region.set_kubeconfig(
        "apiVersion: v1\nkind: Config\ncurrent-context: away\n"
        f"clusters: [{{name: away, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: away, user: {token: not-a-real-token}}]\n"
        "contexts: [{name: away, context: {cluster: away, user: away}}]\n"
    )
    region.save()
    return region


@pytest.fixture
def operator(unreachable_region: Region) -> Iterator[Operator]:
    running = Operator(CONFIG, regions=[unreachable_region.slug]).start()
    yield running
    running.shutdown()


def touched_after(target: Path, moment: float) -> bool:
    return target.exists() and target.stat().st_mtime > moment


def test_heartbeat_goes_on_while_the_apiserver_is_away_and_stops_with_a_dead_region_thread(
    beat_file: Path, operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    wait_until(lambda: "away-1" in operator.leading(), timeout=60, interval=0.1, what="leading away-1")
    (region_thread,) = operator.threads.values()
    # Every resync fails (connection refused), yet the leader's loop goes round and the heartbeat is fresh.
    wait_until(lambda: region_thread.resync_failures >= 2, timeout=60, interval=0.1, what="failed resyncs")
    since = time.time()
    wait_until(lambda: touched_after(beat_file, since), timeout=10, interval=0.05, what="a fresh heartbeat")
    assert time.monotonic() - region_thread.went_round < 5

    # A region thread that died (here: one never started) withholds the heartbeat, which the probe then
    # finds stale; the others' being fine does not make up for it.
    dead = RegionOperator(0, "dead-1", CONFIG, threading.Event())
    with caplog.at_level(logging.ERROR, logger="apps.operator.operator_loop"):
        operator.threads["dead"] = dead
        time.sleep(CONFIG.heartbeat_seconds * 3)  # a pass that was touching when it was added
        withheld_at = time.time()
        time.sleep(CONFIG.heartbeat_seconds * 10)
        assert not touched_after(beat_file, withheld_at)
    assert any("dead-1" in r.getMessage() for r in caplog.records)
    del operator.threads["dead"]
    wait_until(
        lambda: touched_after(beat_file, withheld_at), timeout=10, interval=0.05, what="heartbeat back"
    )


def test_a_region_thread_that_stops_going_round_counts_as_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    config = dataclasses.replace(CONFIG, stall_seconds=60)
    thread = RegionOperator(0, "stuck-1", config, threading.Event())
    assert thread.stalled()  # not alive
    monkeypatch.setattr(thread, "is_alive", lambda: True)
    assert not thread.stalled()
    assert not thread.stalled(now=thread.went_round + 59)
    assert thread.stalled(now=thread.went_round + 61)
