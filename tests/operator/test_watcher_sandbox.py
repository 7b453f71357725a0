"""watcher.watch_forever against a real apiserver: list, watch with bookmarks, resume, 410 Gone -> list again,
an unreachable apiserver -> retries without raising, a stop event -> returns. Nothing is mocked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from apps.operator import gc
from apps.operator.watcher import Queued, watch_forever
from tests.fixtures.kube import wait_until

JOIN_TIMEOUT = 30.0  # bound for a hung watch, not a performance assertion


def plain_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"watched": "yes"}},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}],
            "terminationGracePeriodSeconds": 0,
        },
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((kind, (obj.get("metadata") or {}).get("name", "")))

    def saw(self, kind: str, name: str) -> bool:
        with self.lock:
            return (kind, name) in self.events

    def kinds(self) -> set[str]:
        with self.lock:
            return {kind for kind, _ in self.events}


@pytest.fixture
def watching(
    kube_client: client.ApiClient, kube_namespace: str
) -> Iterator[tuple[Recorder, client.CoreV1Api]]:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(kube_namespace, plain_pod("before"))
    recorder, stop = Recorder(), threading.Event()
    thread = threading.Thread(
        target=watch_forever,
        args=(core.list_namespaced_pod, recorder, stop),
        kwargs={
            "what": "test",
            "timeout_seconds": 2,  # short server-side timeouts: the watch resumes several times
            "resource_version": "1",  # compacted long ago: the apiserver answers 410 Gone
            "namespace": kube_namespace,
            "label_selector": "watched=yes",
        },
        daemon=True,
    )
    thread.start()
    yield recorder, core
    stop.set()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()


def test_list_then_watch_resumes_across_timeouts_and_recovers_from_410(
    watching: tuple[Recorder, client.CoreV1Api], kube_namespace: str
) -> None:
    recorder, core = watching
    # Started from a compacted resourceVersion: the 410 led to a list, which reports the existing pod.
    wait_until(lambda: recorder.saw("ADDED", "before"), timeout=30, what="the pod made before the watch")
    core.create_namespaced_pod(kube_namespace, plain_pod("after"))
    wait_until(lambda: recorder.saw("ADDED", "after"), timeout=30, what="the ADDED event of a new pod")
    # Outlive a few server-side timeouts (2 s each): the watch resumes from the last version it saw.
    wait_until(lambda: recorder.saw("MODIFIED", "after"), timeout=30, what="the pod's status updates")
    core.delete_namespaced_pod("after", kube_namespace, grace_period_seconds=0)
    wait_until(lambda: recorder.saw("DELETED", "after"), timeout=30, what="the DELETED event")
    assert recorder.kinds() <= {"ADDED", "MODIFIED", "DELETED"}  # bookmarks and errors are not events
    assert not recorder.saw("DELETED", "before")


def test_an_unreachable_apiserver_is_retried_without_raising_and_stop_ends_it() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # nothing listens on the discard port
    api = client.ApiClient(configuration)
    recorder, stop = Recorder(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch_forever(client.CoreV1Api(api).list_pod_for_all_namespaces, recorder, stop, what="down")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(3)  # a few failed attempts with backoff
    assert thread.is_alive() and not errors
    stop.set()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive() and not errors and recorder.events == []


def test_watch_events_are_not_decoded_into_client_models(
    kube_client: client.ApiClient, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handlers read the JSON; building a V1Pod of every event as well cost ~0.4 ms each.
    built: list[str] = []
    deserialize = client.ApiClient.deserialize

    def counting(self: client.ApiClient, response: Any, response_type: Any, *args: Any) -> Any:
        built.append(str(response_type))
        return deserialize(self, response, response_type, *args)

    monkeypatch.setattr(client.ApiClient, "deserialize", counting)
    core = client.CoreV1Api(kube_client)
    recorder, stop = Recorder(), threading.Event()
    thread = threading.Thread(
        target=watch_forever,
        args=(core.list_namespaced_pod, recorder, stop),
        kwargs={"what": "test", "timeout_seconds": 2, "namespace": kube_namespace},
        daemon=True,
    )
    thread.start()
    try:
        core.create_namespaced_pod(kube_namespace, plain_pod("raw"), _preload_content=False)
        wait_until(lambda: recorder.saw("MODIFIED", "raw"), timeout=30, what="the pod's events")
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT)
    assert not [t for t in built if "V1Pod" in t]  # the model class or its name


def test_queued_handler_records_the_newest_state_of_every_pod(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    seen: dict[str, str] = {}
    lock = threading.Lock()

    def newest(kind: str, obj: dict[str, Any]) -> None:
        with lock:
            seen[obj["metadata"]["name"]] = f"{kind}:{(obj.get('status') or {}).get('phase')}"

    stop = threading.Event()
    queued = Queued(newest, "test", workers=3)
    threads = queued.threads(stop, "test-worker")
    for thread in threads:
        thread.start()
    threads.append(
        threading.Thread(
            target=watch_forever,
            args=(core.list_namespaced_pod, queued, stop),
            kwargs={"what": "test", "timeout_seconds": 2, "namespace": kube_namespace},
            daemon=True,
        )
    )
    threads[-1].start()
    try:
        names = [f"q{i}" for i in range(12)]
        for name in names:
            core.create_namespaced_pod(kube_namespace, plain_pod(name), _preload_content=False)
        wait_until(
            lambda: all(seen.get(name) == "MODIFIED:Running" for name in names),
            timeout=60,
            what="every pod recorded Running",
        )
        core.delete_namespaced_pod("q0", kube_namespace, grace_period_seconds=0)
        wait_until(lambda: seen.get("q0", "").startswith("DELETED"), timeout=30, what="the deletion")
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)


def test_lists_are_read_in_pages_without_managed_fields(
    kube_client: client.ApiClient, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = client.CoreV1Api(kube_client)
    for i in range(7):
        core.create_namespaced_pod(kube_namespace, plain_pod(f"p{i}"), _preload_content=False)
    monkeypatch.setattr(gc, "LIST_PAGE", 3)
    pages: list[Any] = []

    def listing(*args: Any, **kwargs: Any) -> Any:
        pages.append(kwargs.get("_continue"))
        return core.list_namespaced_pod(*args, **kwargs)

    listed = gc.list_json(listing, kube_namespace, label_selector="watched=yes")
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == [f"p{i}" for i in range(7)]
    assert len(pages) == 3 and pages[0] is None and all(pages[1:])  # 3 + 3 + 1, each page after a token
    assert not [item for item in listed["items"] if "managedFields" in item["metadata"]]
    assert int(listed["metadata"]["resourceVersion"]) > 0  # what a watch resumes from
