"""Retries against the live server, behind a proxy that loses responses: the request reaches the server and
is applied, but the connection is closed before the client hears back. The Python client in-process, and the
installed `gpucloud` command as a subprocess pointed at the proxy."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.accounts.models import ApiToken
from apps.instances.models import Instance, InstanceEvent
from gpucloud_cli import ApiError, Client
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)

FORWARDED = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
ACTION_DESIRED = {"stop": "stopped", "terminate": "terminated"}


@dataclass
class LossyProxy:
    """Forwards to `upstream`; the first `drop` answers to requests whose path ends with `suffix` are lost."""

    upstream: str
    suffix: str = ""
    method: str = "POST"
    drop: int = 1
    seen: list[tuple[str, str, str | None, int, str | None]] = field(default_factory=list)
    url: str = ""

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {name: handler.headers[name] for name in FORWARDED if handler.headers.get(name)}
        request = urllib.request.Request(  # noqa: S310
            self.upstream + handler.path, data=body, method=handler.command, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                status, payload, replayed = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, payload, replayed = exc.code, exc.read(), exc.headers
        key = handler.headers.get("Idempotency-Key")
        self.seen.append((handler.command, handler.path, key, status, replayed.get("Idempotent-Replayed")))
        if handler.command == self.method and handler.path.split("?")[0].endswith(self.suffix) and self.drop:
            self.drop -= 1
            handler.close_connection = True  # applied upstream, but the client never hears back
            return
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def proxy(server: str) -> Iterator[LossyProxy]:
    lossy = LossyProxy(upstream=server)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            lossy.handle(self)

        do_POST = do_DELETE = do_PATCH = do_GET

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    lossy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield lossy
    httpd.shutdown()
    httpd.server_close()


def client_for(actor: Actor, url: str) -> Client:
    return Client(url, actor.token_plaintext, tenant=actor.tenant.slug, max_retries=3, sleep=lambda _: None)


def test_a_launch_whose_response_is_lost_is_retried_with_its_key_and_makes_one_instance(
    proxy: LossyProxy, funded: Actor
) -> None:
    proxy.suffix = "/instances"
    api = client_for(funded, proxy.url)

    instance = api.launch(name="once", region="eu-west-1", instance_type="gpu-h100x1", image="pytorch")

    posts = [s for s in proxy.seen if s[0] == "POST"]
    assert len(posts) == 2  # the lost attempt and the retry
    assert posts[0][2] == posts[1][2] and posts[0][2].startswith("gpucloud-cli-")
    assert (posts[0][3], posts[0][4]) == (201, None)
    assert (posts[1][3], posts[1][4]) == (201, "true")  # the server replayed the first launch
    assert list(Instance.objects.filter(tenant=funded.tenant).values_list("pk", flat=True)) == [
        Instance.objects.get(pk=instance["id"]).pk
    ]


def test_without_the_key_the_same_loss_makes_two_instances(proxy: LossyProxy, funded: Actor) -> None:
    """What the key prevents: the same lost response, retried without one."""
    proxy.suffix = "/instances"
    api = client_for(funded, proxy.url)
    body = {"region": "eu-west-1", "instance_type": "gpu-h100x1", "image": "pytorch"}

    api.request("POST", f"tenants/{funded.tenant.slug}/instances", body=body, idempotency_key=None)

    assert Instance.objects.filter(tenant=funded.tenant).count() == 2


@pytest.mark.parametrize(("action", "method"), [("stop", "POST"), ("terminate", "DELETE")])
def test_an_action_whose_response_is_lost_is_replayed_not_refused_as_a_conflict(
    proxy: LossyProxy, server: str, funded: Actor, action: str, method: str
) -> None:
    api = client_for(funded, server)
    instance = api.launch(name="halt", region="eu-west-1", instance_type="gpu-h100x1", image="pytorch")
    api = client_for(funded, proxy.url)
    path = f"/instances/{instance['id']}" + ("/stop" if action == "stop" else "")
    proxy.suffix, proxy.method = path, method

    acted = getattr(api, action)(instance["id"])

    attempts = [s for s in proxy.seen if s[0] == method and s[1].split("?")[0].endswith(path)]
    assert len(attempts) == 2  # the lost attempt and the retry
    assert attempts[0][2] == attempts[1][2] and attempts[0][2].startswith("gpucloud-cli-")
    assert [(s[3], s[4]) for s in attempts] == [(202, None), (202, "true")]  # applied once, then replayed
    assert (acted["id"], acted["desired_state"]) == (instance["id"], ACTION_DESIRED[action])
    assert InstanceEvent.objects.filter(instance_id=instance["id"], kind="action", name=action).count() == 1


def test_each_action_call_has_its_own_key(proxy: LossyProxy, server: str, funded: Actor) -> None:
    """A key is per logical call: a second stop is a new request (refused: it is already stopped), not a
    replay of the first."""
    api = client_for(funded, server)
    instance = api.launch(name="twice", region="eu-west-1", instance_type="gpu-h100x1", image="pytorch")
    api = client_for(funded, proxy.url)
    proxy.drop = 0
    api.stop(instance["id"])
    with pytest.raises(ApiError) as caught:
        api.stop(instance["id"])
    assert (caught.value.status, caught.value.code) == (409, "invalid_state")
    keys = [s[2] for s in proxy.seen if s[1].endswith("/stop")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_the_command_retries_a_lost_launch_with_one_key_and_makes_one_instance(
    proxy: LossyProxy, cli: Cli, funded: Actor
) -> None:
    """`gpucloud launch` itself, as a subprocess through the proxy, with one retry allowed."""
    proxy.suffix = "/instances"

    result = cli.ok(
        "launch", "--name", "once", "--region", "eu-west-1", "--type", "gpu-h100x1", "--image", "pytorch",
        "--json", GPUCLOUD_API_URL=proxy.url, GPUCLOUD_TOKEN=funded.token_plaintext, GPUCLOUD_MAX_RETRIES="1",
    )  # fmt: skip

    posts = [s for s in proxy.seen if s[0] == "POST"]
    assert len(posts) == 2, proxy.seen  # the lost attempt and the retry
    assert posts[0][2] == posts[1][2] and posts[0][2].startswith("gpucloud-cli-")
    assert [(s[3], s[4]) for s in posts] == [(201, None), (201, "true")]  # the second is the first, replayed
    rows = list(Instance.objects.filter(tenant=funded.tenant).values_list("pk", flat=True))
    assert [str(pk) for pk in rows] == [result.json()["id"]]


def test_a_token_created_by_a_replayed_retry_says_its_secret_is_gone(
    proxy: LossyProxy, cli: Cli, funded: Actor
) -> None:
    """The secret is in the lost response only; the replay has `token: null`. Say so, not `None`."""
    proxy.suffix = "/tokens"
    env = {"GPUCLOUD_API_URL": proxy.url, "GPUCLOUD_TOKEN": funded.token_plaintext}

    result = cli.ok("tokens", "create", "ci", "--scope", "instances:read", **env)

    assert [(s[3], s[4]) for s in proxy.seen if s[0] == "POST"] == [(201, None), (201, "true")]
    created = ApiToken.objects.get(tenant=funded.tenant, name="ci")
    assert "None" not in result.stdout
    assert "shown only once" in result.stdout and f"gpucloud tokens revoke {created.pk}" in result.stdout

    proxy.drop = 1
    again = cli.ok("tokens", "create", "ci-2", "--scope", "instances:read", "--json", **env)
    assert again.json()["token"] is None  # the API's own JSON for scripts
    assert "shown only once" in again.stderr


def test_an_access_key_created_by_a_replayed_retry_says_its_secret_is_gone(
    proxy: LossyProxy, cli: Cli, funded: Actor
) -> None:
    proxy.suffix = "/access-keys"
    env = {"GPUCLOUD_API_URL": proxy.url, "GPUCLOUD_TOKEN": funded.token_plaintext}

    result = cli.ok("access-keys", "create", "laptop", **env)

    assert [(s[3], s[4]) for s in proxy.seen if s[0] == "POST"] == [(201, None), (201, "true")]
    (key,) = cli.ok("access-keys", "--json", **env).json()
    assert "shown only once" in result.stdout and f"gpucloud access-keys revoke {key['id']}" in result.stdout
    cli.ok("access-keys", "revoke", key["id"], **env)


def test_retries_give_up_on_a_server_that_never_answers(funded: Actor) -> None:
    api = Client(f"http://127.0.0.1:{free_port()}", funded.token_plaintext, tenant="x", max_retries=2)
    delays: list[float] = []
    api.sleep = delays.append
    with pytest.raises(Exception, match="cannot reach") as caught:
        api.instances()
    assert type(caught.value).__name__ == "TransportError"
    assert delays == [0.5, 1.0]  # exponential backoff between the three attempts
