"""Two real web servers (gunicorn, threaded) on one test database: what keeps replicas consistent lives in
PostgreSQL, so an Idempotency-Key and a quota hold across processes.

Requests are fired at both servers at once from a thread pool behind a barrier; nothing is mocked. The
region has no cluster connected, so launches are admitted and stay pending (no Kubernetes involved).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from apps.instances.models import Instance
from apps.quotas.services import quota_for
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.instances.helpers import launch_body, seed
from tests.support.processes import PYTHON, Processes, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 120.0  # per request: a bound for a hung server on a loaded machine


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[str]]:
    processes = Processes(tmp_path)
    urls = []
    for name in ("web-1", "web-2"):
        port = free_port()
        processes.start(
            name,
            [
                PYTHON, "-m", "gunicorn", "config.wsgi:application", f"--bind=127.0.0.1:{port}",
                "--workers=1", "--worker-class=gthread", "--threads=8", "--timeout=120",
            ],
        )  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")

    def up(url: str) -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    for url in urls:
        wait_for(lambda url=url: up(url), what=f"the web server at {url}", processes=processes)
    yield urls
    processes.stop_all()


def fire(requests_to_send: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Sends every request at the same moment, each from its own thread."""
    barrier = threading.Barrier(len(requests_to_send))

    def send(call: Callable[[], requests.Response]) -> requests.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(requests_to_send)) as pool:
        return list(pool.map(send, requests_to_send))


def launch(actor: Actor, base: str, body: dict[str, Any], **headers: str) -> Callable[[], requests.Response]:
    url = f"{base}/api/v1/tenants/{actor.tenant.slug}/instances"
    auth = {"Authorization": f"Bearer {actor.token_plaintext}", **headers}
    return lambda: requests.post(url, json=body, headers=auth, timeout=TIMEOUT)


def test_one_idempotency_key_sent_to_both_servers_at_once_makes_one_instance(
    servers: list[str], make_actor: Callable[..., Actor]
) -> None:
    seed()
    owner = make_actor(Role.OWNER)
    body = launch_body(instance_type="cpu-4x", image="cuda-12", name="once")
    calls = [launch(owner, servers[i % 2], body, **{"Idempotency-Key": "launch-once"}) for i in range(6)]
    responses = fire(calls)

    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)  # the same response, whichever server answered
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in responses) == 1
    assert list(Instance.objects.filter(tenant=owner.tenant).values_list("pk", flat=True)) == [
        Instance.objects.get(pk=bodies[0]["id"]).pk
    ]


def test_concurrent_launches_over_both_servers_admit_exactly_the_quota(
    servers: list[str], make_actor: Callable[..., Actor]
) -> None:
    seed()
    owner = make_actor(Role.OWNER)
    quota = quota_for(owner.tenant)
    quota.max_instances = 3
    quota.save()
    calls = [
        launch(owner, servers[i % 2], launch_body(instance_type="cpu-4x", image="cuda-12", name=f"race-{i}"))
        for i in range(8)
    ]
    responses = fire(calls)

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 3 + [409] * 5, [r.text for r in responses]
    refused = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {e["code"] for e in refused} == {"quota_exceeded"}
    assert Instance.objects.filter(tenant=owner.tenant).count() == 3
