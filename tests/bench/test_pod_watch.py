"""bench/kube.PodWatch's event handling: raw JSON lines, resourceVersion kept (bookmarks included) so a
reconnect resumes instead of replaying every pod, first Running and deletion recorded."""

from __future__ import annotations

import json

from kubernetes import client

from bench.kube import PodWatch


def line(kind: str, name: str, version: str, phase: str | None = None) -> bytes:
    obj = {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}
    if phase:
        obj["status"] = {"phase": phase}
    return json.dumps({"type": kind, "object": obj}).encode()


def test_running_deletion_and_bookmarks_move_the_resource_version() -> None:
    ticks = iter(range(100))
    watch = PodWatch(client.ApiClient(), namespace="ns", clock=lambda: next(ticks))
    watch._line(line("ADDED", "a", "10", "Pending"))
    watch._line(line("MODIFIED", "a", "11", "Running"))
    watch._line(line("MODIFIED", "a", "12", "Running"))  # a later Running is not a new sighting
    watch._line(line("BOOKMARK", "", "40"))
    assert watch.running == {"ns/a": 1}
    assert watch.resource_version == "40"
    watch._line(line("DELETED", "a", "41", "Running"))
    assert watch.gone == {"ns/a"} and watch.resource_version == "41"


def test_a_line_split_across_chunks_is_joined() -> None:
    watch = PodWatch(client.ApiClient(), namespace="ns", clock=lambda: 7.0)
    whole = line("MODIFIED", "b", "5", "Running")
    watch._line(whole[:20])
    assert watch.running == {}
    watch._line(whole[20:])
    assert watch.running == {"ns/b": 7.0} and watch.resource_version == "5"


def test_pods_keyed_by_a_label() -> None:
    watch = PodWatch(client.ApiClient(), clock=lambda: 1.0)
    watch.key_label = "gpucloud.io/instance"
    obj = {
        "metadata": {"name": "p", "labels": {"gpucloud.io/instance": "abc"}},
        "status": {"phase": "Running"},
    }
    watch._line(json.dumps({"type": "ADDED", "object": obj}).encode())
    assert watch.running == {"abc": 1.0}
