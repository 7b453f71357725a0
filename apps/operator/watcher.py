"""Watches of one region's cluster, turned into instance observations within about a second.

`watch_forever` is the one list-then-watch loop: list (the sync), then watch from the list's
resourceVersion with bookmarks, resuming from the last version seen after every timeout; a 410 Gone (the
version was compacted away) lists again. Errors wait with bounded, jittered backoff; nothing here raises
out of the loop, so an apiserver that is down only delays the operator.

`PodHandler` maps a pod event to its instance (the `gpucloud.io/instance` label) and records what the pod
shows; anything else (a deleted pod, a pod of an older generation, an instance that should not run) is
left to the level-triggered reconciler, which recreates a missing pod or reports `pod_gone`.
`KubeEventHandler` copies Kubernetes Event messages about an instance's pod into its timeline.
`Queued` runs a handler on several worker threads, the newest event per instance (workqueue.py): the pod
watch uses it, so a wave of new pods is recorded as fast as the database allows, not one event at a time.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection, transaction
from kubernetes import watch
from kubernetes.client.rest import ApiException

from apps.core import request_context
from apps.instances import metrics
from apps.instances.models import DesiredState, Instance, InstanceEvent
from apps.instances.states import State
from apps.operator import names, workqueue
from apps.operator.backoff import Backoff
from apps.operator.cluster import Cluster
from apps.operator.gc import list_json
from apps.operator.observed import Lookup
from apps.operator.reconciler import RUN_STATES, load_for_pod, pod_ref, reconcile, record_pod

logger = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]
KUBE_EVENT = "kube_event"


def describe(exc: BaseException) -> str:
    """An error for the log: status and reason of API errors (never their headers or bodies)."""
    if isinstance(exc, ApiException):
        return f"ApiException {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def watch_forever(
    list_fn: Any,
    handle: Handler | None,
    stop: threading.Event,
    *,
    what: str,
    timeout_seconds: int = 30,
    resource_version: str | None = None,
    on_list: Callable[[list[dict[str, Any]]], None] | None = None,
    on_event: Handler | None = None,
    on_forbidden: Callable[[bool], None] | None = None,
    **selectors: Any,
) -> None:
    """Runs until `stop` is set. `resource_version` resumes a watch (None: list first); `selectors` are
    passed to the list call (label_selector, field_selector, namespace for namespaced lists). `on_list`
    receives every list's items before they are delivered (a store replaces its contents: stores.py),
    `on_event` every event before it is (the store keeps it), on the watch's own thread; `handle` may be None;
    `on_forbidden`, if given, is called and the loop returns when the credential may not list (True) or may
    list but not watch (False): the store then knows it must be listed when read, or cannot be."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            if not resource_version:
                listing = list_json(list_fn, **selectors)
                if on_list is not None:
                    on_list(listing.get("items") or [])
                for item in listing.get("items") or []:
                    if handle is not None:
                        _deliver(handle, "ADDED", item, what, measured=False)
                resource_version = (listing.get("metadata") or {}).get("resourceVersion")
                logger.debug("%s: listed, watching from %s", what, resource_version)
            stream = watch.Watch()
            for event in stream.stream(
                _undeclared(list_fn),
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _request_timeout=(5, timeout_seconds + 15),
                **selectors,
            ):
                obj = event.get("raw_object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    resource_version = version
                if event["type"] in ("ADDED", "MODIFIED", "DELETED") and on_event is not None:
                    on_event(event["type"], obj)
                if event["type"] != "BOOKMARK" and handle is not None:
                    _deliver(handle, event["type"], obj, what)
                if stop.is_set():
                    stream.stop()
                    break
            backoff.reset()
        except ApiException as exc:
            if exc.status == 410:
                logger.info("%s: resourceVersion gone (410), listing again", what)
                resource_version = None
                continue
            if exc.status == 403 and on_forbidden is not None:
                logger.warning("%s: %s is forbidden", what, "the watch" if resource_version else "the list")
                on_forbidden(not resource_version)
                return
            logger.warning("%s: %s; retrying with backoff", what, describe(exc))
            backoff.wait(stop)
        except Exception as exc:
            logger.warning("%s: %s; retrying with backoff", what, describe(exc))
            backoff.wait(stop)


def _undeclared(list_fn: Any) -> Any:
    """The list call without its declared return type: the watch then yields the decoded JSON only. With it,
    the client also builds a V1Pod (or V1Event) model of every event, about 0.4 ms each, that nothing here
    reads (handlers take `raw_object`)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return list_fn(*args, **kwargs)

    return call


def _deliver(handle: Handler, kind: str, obj: dict[str, Any], what: str, *, measured: bool = True) -> None:
    if isinstance(handle, Queued):
        handle.put(kind, obj, measured=measured)  # its workers dispatch it
    else:
        _dispatch(handle, kind, obj, what, measured=measured)


def _dispatch(handle: Handler, kind: str, obj: dict[str, Any], what: str, *, measured: bool = True) -> None:
    """One event; a failure is logged and left to the next event or the resync. The watch lag is measured
    once the event is handled: what a backlog of events delays. Not for the items of a list (`measured`
    False): an object listed after a 410 may have last changed hours ago."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    try:
        close_old_connections()
        with request_context.bind(instance_id=labels.get(names.INSTANCE_LABEL)):  # for the log lines
            handle(kind, obj)
        if measured:
            metrics.observe_watch_lag(what, kind, obj)
    except Exception as exc:
        meta = obj.get("metadata") or {}
        logger.warning(
            "%s: handling %s %s/%s failed: %s",
            what,
            kind,
            meta.get("namespace"),
            meta.get("name"),
            describe(exc),
        )
    finally:
        release_connection()


def release_connection() -> None:
    """Hand this thread's connection back before it waits (for the next event, the next round): with the
    pool (config/settings/database.py) the operator's threads share a few connections, and one that idles
    holding its own would starve the others. Unpooled, this closes only an obsolete connection."""
    try:
        close_old_connections()
    except Exception as exc:
        logger.warning("closing a database connection failed: %s", describe(exc))


class Queued:
    """A handler run by `workers` threads instead of the watch's own: the watch only queues each event,
    keyed by instance, newest event per key (workqueue.py). One instance's events stay in order."""

    def __init__(self, handle: Handler, what: str, workers: int):
        self.handle, self.what, self.workers = handle, what, workers
        self.queue = workqueue.KeyedQueue()

    def put(self, kind: str, obj: dict[str, Any], *, measured: bool = True) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("labels") or {}).get(names.INSTANCE_LABEL) or (
            f"{meta.get('namespace')}/{meta.get('name')}"
        )
        self.queue.put(key, (kind, obj, measured))

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        self.put(kind, obj)

    def threads(self, stop: threading.Event, name: str) -> list[threading.Thread]:
        """The worker threads, not started; they return once `stop` is set (each closes its connection)."""
        return [
            threading.Thread(target=self._work, args=(stop,), name=f"{name}-{i}", daemon=True)
            for i in range(self.workers)
        ]

    def _work(self, stop: threading.Event) -> None:
        try:
            workqueue.work(
                self.queue,
                lambda kind, obj, measured: _dispatch(self.handle, kind, obj, self.what, measured=measured),
                stop,
            )
        finally:
            connection.close()


def _instance_id(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text or "")
    except ValueError:
        return None


class PodHandler:
    """`lookup`: where the leader's stores are (operator_loop), to read a Service or node from, not GET."""

    def __init__(
        self,
        region_id: Any,
        cluster: Cluster,
        on_change: Callable[[], None] = lambda: None,
        lookup: Callable[[], Lookup | None] = lambda: None,
    ):
        self.region_id, self.cluster, self.on_change, self.lookup = region_id, cluster, on_change, lookup

    def __call__(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        instance_id = _instance_id((meta.get("labels") or {}).get(names.INSTANCE_LABEL))
        self.on_change()
        if instance_id is None:
            return
        instance = load_for_pod(instance_id)  # a reconcile, the rarer case, loads it in full itself
        if instance is None or instance.region_id != self.region_id:
            return  # an orphan: garbage collection removes it
        if kind == "DELETED" or meta.get("name") != names.instance_object_name(instance.pk):
            reconcile(instance.pk)  # recreates the pod of an instance that should run, or reports pod_gone
            return
        if meta.get("deletionTimestamp"):
            return  # on its way out; the DELETED event follows
        runs = instance.desired_state == DesiredState.RUNNING and instance.state in RUN_STATES
        annotations = meta.get("annotations") or {}
        current = annotations.get(names.GENERATION_KEY) == str(instance.generation)
        if runs and (current or instance.state == State.RUNNING):
            record_pod(instance, pod, self.cluster, pod_ref(instance), self.lookup())
        else:
            reconcile(instance.pk)


class KubeEventHandler:
    """Kubernetes Events about an instance's pod -> InstanceEvent(kind="kube_event"), one per distinct
    reason and message (a repeated event bumps its count in Kubernetes, not a new line here)."""

    def __init__(self, region_id: Any):
        self.region_id = region_id

    def __call__(self, kind: str, event: dict[str, Any]) -> None:
        if kind not in ("ADDED", "MODIFIED"):
            return
        involved = event.get("involvedObject") or {}
        name = involved.get("name") or ""
        if involved.get("kind") != "Pod" or not name.startswith("i-"):
            return
        instance_id = _instance_id(name[2:])
        if instance_id is None:
            return
        reason = (event.get("reason") or "")[:32]
        message = (event.get("message") or "")[:500]
        with transaction.atomic():
            instance = (
                Instance.objects.select_for_update()
                .filter(pk=instance_id, region_id=self.region_id)
                .only("pk", "state", "billing_since")
                .first()
            )
            if instance is None:
                return
            seen = InstanceEvent.objects.filter(
                instance=instance, kind=KUBE_EVENT, name=reason, message=message
            ).exists()
            if seen:
                return
            source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
            InstanceEvent.objects.create(
                instance=instance,
                kind=KUBE_EVENT,
                name=reason,
                from_state=instance.state,
                to_state=instance.state,
                reason=(event.get("type") or "")[:32],
                message=message,
                actor_label=f"kubernetes:{source}"[:254],
                billable=instance.billing_since is not None,  # the billing clock goes on as it was
            )
