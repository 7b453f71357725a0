"""`gpucloud wait` / `--wait` and the SDK's Client.wait long-poll the API (`?wait=...&timeout=...`): a state
change reaches them at once, not at the next poll. The polling interval is set to 30 s here, so a client
that polled would see the change only after 30 s; the state is changed 1 s in, by this process, as the
operator would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from apps.instances import services
from apps.instances.models import Instance
from apps.instances.states import Action, State
from gpucloud_cli.client import Client
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.support import factories


def _stop_later(instance_id: Any, delay: float) -> threading.Thread:
    def run() -> None:
        try:
            time.sleep(delay)
            # A region without a cluster: the reconcile completes the stop at once (stopping -> stopped).
            services.instance_act(
                actor=None, instance=Instance.objects.get(pk=instance_id), action=Action.STOP
            )
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def running(funded: Actor) -> Iterator[Instance]:
    yield factories.make_instance(funded.tenant, created_by=funded.user, state=State.RUNNING, name="held")


class Recording(Client):
    """The real client, noting each URL it sends (to see the long-poll's parameters)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.urls: list[str] = []

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Any:
        self.urls.append(url)
        return super()._send(method, url, body, headers)


def test_the_sdk_wait_returns_on_the_change(cli: Cli, funded: Actor, running: Instance) -> None:
    client = Recording(cli.api_url, funded.token_plaintext, tenant=funded.tenant.slug)
    changer = _stop_later(running.pk, 1.0)
    started = time.monotonic()
    instance = client.wait(str(running.pk), "stopped", timeout=60, interval=30)
    took = time.monotonic() - started
    changer.join()
    assert instance["state"] == "stopped"
    assert 0.9 < took < 10, took
    assert any("wait=stopped&timeout=" in url for url in client.urls), client.urls
    assert len(client.urls) <= 3, client.urls  # the first read, then one held request (or two)


def test_the_cli_wait_returns_on_the_change(cli: Cli, funded: Actor, running: Instance) -> None:
    cli.login(funded)
    changer = _stop_later(running.pk, 1.0)
    started = time.monotonic()
    result = cli("wait", "held", "--state", "stopped", "--interval", "30", "--timeout", "60")
    took = time.monotonic() - started
    changer.join()
    assert result.returncode == 0, str(result)
    assert "held: stopped" in result.stdout
    assert took < 15, took
