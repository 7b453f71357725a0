"""bench/launch_latency.WaitClient: waits with ?wait=running, and polls only when the server refuses or
ignores the parameter. The session is a stand-in for the API server: the wait endpoint is being added
beside this benchmark, so each of its three possible behaviours is played here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from bench import launch_latency
from bench.launch_latency import WaitClient


@dataclass
class Answer:
    status_code: int
    state: str

    def json(self) -> dict:
        return {"state": self.state}


@dataclass
class Server:
    behaviour: str  # "waits", "refuses", "ignores", "busy" (503 too_many_waiters once, then waits)
    states: list[str]
    calls: list[dict] = field(default_factory=list)

    def get(self, url: str, params: dict | None = None, timeout: float = 0) -> Answer:
        self.calls.append(params or {})
        if params and self.behaviour == "refuses":
            return Answer(400, "")
        if params and self.behaviour == "busy":
            self.behaviour = "waits"
            return Answer(503, "")
        if params and self.behaviour == "waits":
            return Answer(200, "running")
        return Answer(200, self.states.pop(0))


def test_a_server_with_the_wait_endpoint_is_asked_once_and_never_polled() -> None:
    server = Server("waits", [])
    client = WaitClient(server, "http://x/instances")
    assert client.until_running("i", "pending", time.perf_counter() + 5) == "running"
    assert server.calls == [{"wait": "running", "timeout": launch_latency.WAIT_TIMEOUT}]
    assert client.mode == "wait"


@pytest.mark.parametrize("behaviour", ["refuses", "ignores"])
def test_a_server_without_it_is_polled_and_the_mode_says_so(behaviour, monkeypatch) -> None:
    monkeypatch.setattr(launch_latency, "POLL", 0)
    server = Server(behaviour, ["pending", "provisioning", "running"])
    client = WaitClient(server, "http://x/instances")
    assert client.until_running("i", "pending", time.perf_counter() + 5) == "running"
    assert client.mode.startswith("poll") and behaviour[:-1] in client.mode  # "refuse(d)", "ignore(d)"
    assert [c for c in server.calls if c] == [{"wait": "running", "timeout": launch_latency.WAIT_TIMEOUT}]
    assert server.states == []


def test_a_failed_instance_ends_the_wait() -> None:
    client = WaitClient(Server("ignores", ["failed"]), "http://x/instances")
    with pytest.raises(RuntimeError, match="failed"):
        client.until_running("i", "pending", time.perf_counter() + 5)


def test_a_busy_server_is_asked_again_after_a_pause_and_still_waited_on(monkeypatch) -> None:
    monkeypatch.setattr(launch_latency, "POLL", 0)
    server = Server("busy", ["pending"])
    client = WaitClient(server, "http://x/instances")
    assert client.until_running("i", "pending", time.perf_counter() + 5) == "running"
    asked = {"wait": "running", "timeout": launch_latency.WAIT_TIMEOUT}
    assert server.calls == [asked, {}, asked]  # refused, the state read plainly, then waited on
    assert client.mode == "wait"
