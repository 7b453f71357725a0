"""Watch-fed stores of one region's cluster (client-go's informers): each kind the operator reads is listed
once when leadership starts and kept current by a watch that resumes from the list's resourceVersion (a 410
Gone lists again and replaces the store). The resync, garbage collection and capacity read these instead of
listing the cluster on every pass (docs/operator.md "Caches").

- pods: every pod of the cluster (capacity subtracts the requests of pods it does not manage); the pod watch
  also hands gpucloud's pods to the PodHandler (operator_loop.py), so there is one pod watch, not two;
- nodes; Services and namespaces labelled as gpucloud's.

Secrets have no store: the operator may not list or watch them (docs/security.md). Each instance's Secret is
owned by its Service, so Kubernetes deletes it with the Service, and the reconciler applies it whenever a pod
may be made (reconciler._secret_due).

A credential that may list a kind but not watch it (a cluster whose RBAC predates the watch verbs,
docs/operations.md "Upgrading") leaves that store `polled`: it is listed again each time the resync reads it,
one LIST per pass, as before the stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from apps.operator import names
from apps.operator.cluster import Cluster, Manifest
from apps.operator.gc import list_json
from apps.operator.watcher import Handler, watch_forever

Ref = tuple[str, str]  # namespace ("" when cluster-scoped), name


def ref_of(obj: Manifest) -> Ref:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", "") or "", meta.get("name", "") or ""


class Store:
    """The newest version of every object of one kind, by (namespace, name); safe across threads."""

    def __init__(self, what: str, list_fn: Any, **selectors: Any):
        self.what, self.list_fn, self.selectors = what, list_fn, selectors
        self._items: dict[Ref, Manifest] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()  # the first list is in
        self.polled = False  # the watch is forbidden: `snapshot` lists again
        self.forbidden = False  # even the list is: the store stays empty, and its readers know it
        self.lists = 0  # LIST calls made for this store (tests, the log)

    def replace(self, items: list[Manifest]) -> None:
        """A fresh list is the whole truth: objects it lacks were deleted while nobody watched."""
        fresh = {ref_of(item): item for item in items}
        with self._lock:
            self._items = fresh
            self.lists += 1
        self.synced.set()

    def apply(self, kind: str, obj: Manifest) -> None:
        (obj.get("metadata") or {}).pop("managedFields", None)  # as list_json does: large, never read
        with self._lock:
            if kind == "DELETED":
                self._items.pop(ref_of(obj), None)
            else:
                self._items[ref_of(obj)] = obj

    def get(self, namespace: str, name: str) -> Manifest | None:
        with self._lock:
            return self._items.get((namespace, name))

    def snapshot(self) -> dict[Ref, Manifest]:
        """Every object as of now (a copy of the index; the objects themselves are shared: read only)."""
        if self.polled:
            self.replace(list(list_json(self.list_fn, **self.selectors).get("items") or []))
        with self._lock:
            return dict(self._items)

    def items(self) -> list[Manifest]:
        return list(self.snapshot().values())

    def mark_polled(self) -> None:
        self.polled = True

    def refused(self, listing: bool) -> None:
        """The credential may not list (`listing`) or may not watch this kind."""
        if listing:
            self.forbidden = True
        else:
            self.polled = True

    def watch(
        self,
        stop: threading.Event,
        *,
        timeout_seconds: int = 30,
        then: Handler | None = None,
        resource_version: str | None = None,
    ) -> Callable[[], None]:
        """The body of this store's watch thread: list, then watch until `stop` (`then` gets every event
        too; `resource_version` resumes a watch without listing first)."""

        def run() -> None:
            watch_forever(
                self.list_fn,
                then,
                stop,
                on_event=self.apply,
                what=self.what,
                timeout_seconds=timeout_seconds,
                resource_version=resource_version,
                on_list=self.replace,
                on_forbidden=self.refused,
                **self.selectors,
            )
            self.synced.set()  # a polled store (or one stopped early) is read by listing

        return run


class ClusterStores:
    """The stores of one region's cluster, for one leadership term."""

    def __init__(self, cluster: Cluster, slug: str = ""):
        core, selector = cluster.core, names.managed_selector()
        self.pods = Store(f"pods@{slug}", core.list_pod_for_all_namespaces)
        self.nodes = Store(f"nodes@{slug}", core.list_node)
        self.services = Store(
            f"services@{slug}", core.list_service_for_all_namespaces, label_selector=selector
        )
        self.namespaces = Store(f"namespaces@{slug}", core.list_namespace, label_selector=selector)
        # What a tenant namespace holds besides pods and Services (manifests.make_namespace_objects), to
        # compare with what is due by the digest stamped on each (applied.py) instead of applying it all.
        net, rbac = cluster.net, cluster.rbac
        self.namespace_objects = {
            kind: Store(f"{kind}@{slug}", fn, label_selector=selector)
            for kind, fn in (
                ("ResourceQuota", core.list_resource_quota_for_all_namespaces),
                ("LimitRange", core.list_limit_range_for_all_namespaces),
                ("ServiceAccount", core.list_service_account_for_all_namespaces),
                ("NetworkPolicy", net.list_network_policy_for_all_namespaces),
                ("RoleBinding", rbac.list_role_binding_for_all_namespaces),
            )
        }

    def all(self) -> list[Store]:
        return [self.pods, self.nodes, self.services, self.namespaces, *self.namespace_objects.values()]

    def knows_namespace_objects(self) -> bool:
        """Whether every kind of a tenant namespace is watched (or at least listable): a credential whose
        RBAC predates these reads (docs/operations.md "Upgrading") leaves the resync applying them all."""
        return not any(store.forbidden for store in [self.namespaces, *self.namespace_objects.values()])

    def namespace_objects_snapshot(self) -> dict[tuple[str, str, str], Manifest]:
        """(kind, namespace, name) -> object, the Namespaces included, as of now."""
        found = {("Namespace", ns, name): obj for (ns, name), obj in self.namespaces.snapshot().items()}
        for kind, store in self.namespace_objects.items():
            found.update({(kind, ns, name): obj for (ns, name), obj in store.snapshot().items()})
        return found

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(store.synced.wait(max(0.0, deadline - time.monotonic())) for store in self.all())

    def service(self, namespace: str, name: str) -> Manifest | None:
        return self.services.get(namespace, name)

    def node(self, name: str) -> Manifest | None:
        return self.nodes.get("", name)

    def managed_pods(self) -> dict[Ref, Manifest]:
        return {ref: pod for ref, pod in self.pods.snapshot().items() if managed(pod)}


def polled(cluster: Cluster, slug: str = "") -> ClusterStores:
    """Stores without watches, each listed when read: for a resync run outside a leadership term (the
    benchmarks time one in their own process)."""
    stores = ClusterStores(cluster, slug)
    for store in stores.all():
        store.mark_polled()
        store.synced.set()
    for store in stores.namespace_objects.values():
        store.forbidden = True  # not listed per pass: the resync applies namespace objects as it did
    return stores


def managed(obj: Manifest) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY
