"""What this process last applied to each cluster, so that a reconcile applies only what changed.

Server-side apply is idempotent but not free: a launch used to re-apply every object of the tenant's
namespace (namespace, ResourceQuota, LimitRange, ServiceAccount, NetworkPolicies) plus the instance's Secret
and Service before creating its pod, about ten round trips that change nothing after the first launch
(docs/benchmarks.md). Here each applied manifest's digest is remembered per cluster and object for
`TTL_SECONDS`; the same manifest is not sent again within that time.

Every applied object carries its manifest's digest as an annotation (`stamped`), so the operator's resync
learns from one list per kind what is in place, also in a process that applied nothing yet (a new leader).

What keeps the cluster right regardless: the operator's resync applies the namespace objects of every
tenant whose objects its stores lack or show with another digest (tenant_namespaces.py) and forgets the
Services its store no longer shows (restoring what someone deleted); a pod creation refused because the
namespace is gone forgets the namespace and applies it again; deleting an object forgets it; and an entry
expires after the TTL anyway. An edit by hand that keeps the digest annotation of a Secret or Service is not
noticed until its manifest changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from apps.operator import names

TTL_SECONDS = 300.0

Key = tuple[str, str, str, str]  # cluster, kind, namespace ("" when cluster-scoped), name


def key_of(cluster_id: str, manifest: dict[str, Any]) -> Key:
    meta = manifest["metadata"]
    return (cluster_id, manifest["kind"], meta.get("namespace", ""), meta["name"])


def digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()


def stamped(manifest: dict[str, Any], manifest_digest: str) -> dict[str, Any]:
    """The manifest with its digest as an annotation, so that any process listing the object later knows
    what was applied (a new leader's first resync then sends only what differs)."""
    meta = dict(manifest["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), names.APPLIED_DIGEST_KEY: manifest_digest}
    return {**manifest, "metadata": meta}


def stamp_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(names.APPLIED_DIGEST_KEY)


class AppliedCache:
    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._seen: dict[Key, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def is_current(self, key: Key, manifest_digest: str) -> bool:
        with self._lock:
            seen = self._seen.get(key)
        return seen is not None and seen[0] == manifest_digest and self.clock() - seen[1] < self.ttl

    def remember(self, key: Key, manifest_digest: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 100_000:  # bounded: expired entries go first
                self._seen = {k: v for k, v in self._seen.items() if now - v[1] < self.ttl}
            self._seen[key] = (manifest_digest, now)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def forget_namespace(self, cluster_id: str, namespace: str) -> None:
        """Everything in the namespace and the namespace itself (it may have been deleted)."""
        with self._lock:
            for key in list(self._seen):
                inside = key[2] == namespace or (key[1] == "Namespace" and key[3] == namespace)
                if key[0] == cluster_id and inside:
                    del self._seen[key]

    def forget_missing(self, cluster_id: str, kind: str, present: Iterable[tuple[str, str]]) -> int:
        """Forget the remembered objects of `kind` that a fresh list no longer shows; returns how many."""
        there = set(present)
        with self._lock:
            gone = [
                k for k in self._seen if k[0] == cluster_id and k[1] == kind and (k[2], k[3]) not in there
            ]
            for key in gone:
                del self._seen[key]
        return len(gone)

    def learn(self, cluster_id: str, kind: str, listed: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Take a fresh list of `kind` as what is applied: objects it lacks are forgotten (applied again when
        next reconciled), those it shows are remembered with the digest stamped on them (`stamped`)."""
        self.forget_missing(cluster_id, kind, listed)
        for (namespace, name), obj in listed.items():
            stamp = stamp_of(obj)
            if stamp is not None:
                self.remember((cluster_id, kind, namespace, name), stamp)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


cache = AppliedCache()
