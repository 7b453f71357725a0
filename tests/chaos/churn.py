"""A customer's client driving launches, stops, starts, restarts and terminations through the REST API while
the drill breaks things underneath.

It behaves as a careful real client: every write carries an Idempotency-Key; a connection error, a timeout or
a 5xx is retried with the same key (on the next web server) until a bounded deadline. What the API
acknowledged (2xx) is recorded with its key, so the drill can check that it took effect exactly once; a
4xx is a refusal (invalid_state, no_capacity, quota_exceeded) and is recorded as such. Choices come from a
seeded RNG; only their timing depends on the machine.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.conftest import Actor

REQUEST_TIMEOUT = (3.0, 30.0)  # connect, read: a hung (killed, stopped) server is left for the next one
GIVE_UP_AFTER = 180.0  # seconds of retrying one request: longer than any outage a drill makes
TYPES = {"us-east-1": ("cpu-4x", "gpu-h100x1"), "eu-west-1": ("cpu-4x", "gpu-l40sx1")}
RUNNABLE = ("pending", "provisioning", "starting", "running")
RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass
class Outcome:
    method: str
    path: str
    key: str
    status: int | None  # None: never answered within GIVE_UP_AFTER
    body: Any = None
    attempts: int = 1

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        return self.status is None


@dataclass
class Api:
    """The REST API over several web servers, with the retry policy above."""

    urls: list[str]
    actor: Actor
    rng: random.Random
    session: requests.Session = field(default_factory=requests.Session)
    _turn: int = 0

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.actor.token_plaintext}"

    def path(self, suffix: str) -> str:
        return f"/api/v1/tenants/{self.actor.tenant.slug}{suffix}"

    def call(self, method: str, suffix: str, body: Any = None, *, key: str | None = None) -> Outcome:
        path = self.path(suffix)
        headers = {"Idempotency-Key": key} if key else {}
        deadline = time.monotonic() + GIVE_UP_AFTER
        attempts = 0
        while True:
            attempts += 1
            self._turn += 1
            base = self.urls[self._turn % len(self.urls)]
            try:
                response = self.session.request(
                    method, base + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT
                )
            except RETRYABLE:
                response = None
            if response is not None and response.status_code < 500:
                data = response.json() if response.content else None
                return Outcome(method, path, key or "", response.status_code, data, attempts)
            if time.monotonic() > deadline:
                return Outcome(method, path, key or "", None, None, attempts)
            time.sleep(0.5)

    def read(self, suffix: str) -> Any:
        outcome = self.call("GET", suffix)
        assert outcome.acknowledged, f"GET {suffix}: {outcome}"
        return outcome.body


@dataclass
class Churn:
    """One tenant's client. `run()` loops until `stop` is set (in a thread: `start()`/`join()`)."""

    api: Api
    regions: tuple[str, ...]
    max_live: int = 6
    launches: dict[str, Outcome] = field(default_factory=dict)  # Idempotency-Key -> acknowledged launch
    actions: list[tuple[str, str, Outcome]] = field(default_factory=list)  # (instance id, action, outcome)
    refused: list[Outcome] = field(default_factory=list)
    unknown: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    @property
    def rng(self) -> random.Random:
        return self.api.rng

    def key(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def record(self, outcome: Outcome) -> None:
        if outcome.unknown:
            self.unknown.append(outcome)
        elif not outcome.acknowledged:
            self.refused.append(outcome)

    def launch(self, region: str | None = None) -> Outcome:
        region = region or self.rng.choice(self.regions)
        key = self.key()
        body = {
            "name": f"c-{key[:8]}",
            "region": region,
            "instance_type": self.rng.choice(TYPES[region]),
            "image": "cuda-12",
        }
        outcome = self.api.call("POST", "/instances", body, key=key)
        self.record(outcome)
        if outcome.acknowledged:
            self.launches[key] = outcome
        return outcome

    def act(self, instance_id: str, action: str) -> Outcome:
        key = self.key()
        if action == "terminate":
            outcome = self.api.call("DELETE", f"/instances/{instance_id}", key=key)
        else:
            outcome = self.api.call("POST", f"/instances/{instance_id}/{action}", key=key)
        self.record(outcome)
        self.actions.append((instance_id, action, outcome))
        return outcome

    def step(self) -> None:
        listed = self.api.read("/instances?limit=200")
        live = {i["id"]: i["state"] for i in listed["results"]}
        running = [i for i, s in live.items() if s in RUNNABLE]
        parked = [i for i, s in live.items() if s in ("stopped", "failed")]
        choices = ["launch"] * (3 if len(live) < self.max_live else 0)
        choices += ["stop"] * 2 * bool(running) + ["restart"] * bool(running)
        choices += ["start"] * 2 * bool(parked) + ["terminate"] * 2 * bool(live)
        choice = self.rng.choice(choices or ["launch"])
        if choice == "launch":
            self.launch()
        elif choice in ("stop", "restart"):
            self.act(self.rng.choice(sorted(running)), choice)
        elif choice == "start":
            self.act(self.rng.choice(sorted(parked)), "start")
        else:
            self.act(self.rng.choice(sorted(live)), "terminate")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
                self.stop.wait(self.rng.uniform(0.2, 0.8))
        except BaseException as exc:  # surfaced by join(): a client that crashed is a failed drill
            self.error = exc

    def start(self) -> Churn:
        self._thread = threading.Thread(target=self.run, name="churn", daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(GIVE_UP_AFTER + 60)
        if self.error is not None:
            raise self.error

    def acknowledged_actions(self) -> list[tuple[str, str, Outcome]]:
        return [(i, a, o) for i, a, o in self.actions if o.acknowledged]
