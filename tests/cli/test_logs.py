"""`gpucloud logs` against the live server, which reads the pod log through the region's logs kubeconfig
(the real reader, the real Kubernetes client over HTTP). The apiserver at the end of that kubeconfig is a
small fake in this process: the sandbox's kwok pods have no logs, so it is the boundary here (real
containers' logs are tested on real nodes). It serves /api/v1/namespaces/NS/pods/NAME/log from a list of
timestamped lines, honouring tailLines, sinceSeconds and timestamps, and records each query."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from apps.instances.models import Instance
from apps.operator import client as kube_client
from apps.operator import names
from tests.cli.conftest import GPUCLOUD, Cli
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.support.factories import make_instance
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class FakeApiserver:
    pod_path: str = ""
    lines: list[tuple[datetime, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, text: str, at: datetime | None = None) -> None:
        with self.lock:
            self.lines.append((at or datetime.now(UTC), text))

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        with self.lock:
            self.queries.append(query)
            if path != self.pod_path:
                return 404, '{"kind":"Status","code":404,"reason":"NotFound"}'
            lines = list(self.lines)
        if "sinceSeconds" in query:
            start = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"]))
            lines = [(at, text) for at, text in lines if at >= start]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]) :]
        stamp = query.get("timestamps") == "true"
        return 200, "".join(
            (at.strftime("%Y-%m-%dT%H:%M:%S.%f000Z ") if stamp else "") + text + "\n" for at, text in lines
        )


@pytest.fixture
def apiserver(catalog: Catalog) -> Iterator[FakeApiserver]:
    fake = FakeApiserver()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, body = fake.answer(url.path, query)
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if status == 200 else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    region = catalog.us_east
    region.sandbox = True  # the sandbox rule of check_kubeconfig: a plain http server
    region.set_logs_kubeconfig(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
        "users: [{name: u, user: {token: logs-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    region.save()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        kube_client._cache.clear()


def pod_path(instance: Instance) -> str:
    namespace = names.namespace_name(instance.tenant_id, instance.tenant.slug)
    return f"/api/v1/namespaces/{namespace}/pods/{names.instance_object_name(instance.pk)}/log"


def test_logs_tail_since_previous_timestamps_json(cli: Cli, funded: Actor, apiserver: FakeApiserver) -> None:
    instance = make_instance(funded.tenant, created_by=funded.user, name="trainer")
    apiserver.pod_path = pod_path(instance)
    for text in ("booting", "epoch 1", "epoch 2"):
        apiserver.add(text)
    cli.login(funded)

    assert cli.ok("logs", "trainer").stdout == "booting\nepoch 1\nepoch 2\n"
    assert apiserver.queries[-1] == {"tailLines": "201", "timestamps": "true", "limitBytes": "262144"}

    tail = cli.ok("logs", "trainer", "--tail", "2")
    assert tail.stdout == "epoch 1\nepoch 2\n"
    assert "older lines left out" in tail.stderr

    cli.ok("logs", "trainer", "--since", "10m", "--previous")
    assert apiserver.queries[-1]["sinceSeconds"] == "600" and apiserver.queries[-1]["previous"] == "true"

    stamped = cli.ok("logs", "trainer", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["booting", "epoch 1", "epoch 2"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)

    body = cli.ok("logs", str(instance.pk), "--json").json()
    assert body["lines"] == ["booting", "epoch 1", "epoch 2"] and body["available"] is True
    assert body["last_timestamp"] == stamped[-1].split(" ", 1)[0]


def test_no_log_is_said_on_stderr_and_bad_input_fails(
    cli: Cli, funded: Actor, make_actor: Any, apiserver: FakeApiserver
) -> None:
    cli.login(funded)
    make_instance(funded.tenant, created_by=funded.user, name="nopod", state="pending")  # no pod: 404
    done = cli.ok("logs", "nopod")
    assert (done.stdout, done.stderr.strip()) == ("", "nopod: No pod is running for this instance.")
    make_instance(funded.tenant, created_by=funded.user, name="far", region="eu-west-1")
    assert "Logs are not available in this region." in cli.ok("logs", "far").stderr

    bad = cli("logs", "nopod", "--tail", "0")
    assert bad.returncode == 1 and "tail" in bad.stderr
    assert cli("logs", "nopod", "--since", "8d").returncode == 1
    assert cli("logs", "nopod", "--since", "soon").returncode == 2  # argparse: not a duration

    stranger = make_actor()
    theirs = make_instance(stranger.tenant, created_by=stranger.user)
    assert cli("logs", str(theirs.pk)).returncode == 4


def test_follow_prints_each_line_once_until_the_instance_is_terminated(
    cli: Cli, funded: Actor, apiserver: FakeApiserver
) -> None:
    instance = make_instance(funded.tenant, created_by=funded.user, name="follow-me")
    apiserver.pod_path = pod_path(instance)
    first = datetime.now(UTC) - timedelta(seconds=5)
    apiserver.add("one", first)
    apiserver.add("two", first)  # the same timestamp: the server includes since_time's lines again
    cli.login(funded)
    env = {**cli.env, "HOME": str(cli.home), "GPUCLOUD_MAX_RETRIES": "1"}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCLOUD_", "XDG_CONFIG"))} | env
    follow = subprocess.Popen(
        [str(GPUCLOUD), "logs", "follow-me", "-f", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    try:

        def polls() -> int:
            with apiserver.lock:
                return sum(1 for q in apiserver.queries if q.get("sinceSeconds"))

        def wait_polls(count: int) -> None:
            deadline = time.monotonic() + 60
            while polls() < count:
                assert follow.poll() is None, follow.communicate()
                assert time.monotonic() < deadline, "the CLI stopped polling"
                time.sleep(0.05)

        wait_polls(2)  # it asks since the last line's time now, getting "one" and "two" again
        apiserver.add("three", first)  # a line at the same time, new
        apiserver.add("four")
        wait_polls(polls() + 2)
        apiserver.add("five")
        wait_polls(polls() + 2)
        Instance.objects.filter(pk=instance.pk).update(state="terminated")
        out, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert out == "one\ntwo\nthree\nfour\nfive\n"
    assert "terminated" in err
