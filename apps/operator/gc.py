"""Garbage collection of one region's cluster: gpucloud-labelled objects that no live instance explains.

- Pods and Services labelled `app.kubernetes.io/managed-by=gpucloud` whose instance label names an instance
  that does not exist (in this region) or is terminated are deleted, and with them the instance's SSH
  Secret, by name. Secrets are never listed (the operator may not: a cluster-wide list reads every Secret
  of the cluster); each is owned by its instance's Service, so Kubernetes' own garbage collector deletes it
  with the Service in any case (reconciler._ensure_access), and the deletion by name covers Secrets made
  before they had an owner.
- Tenant namespaces (managed-by label) of closed tenants are deleted, with everything in them.

`known_tenants_only` keeps the collector's hands off objects whose tenant is not in this database at all:
for a cluster shared by several control planes (developers' and CI's test databases on one sandbox).
A production deployment owns its clusters and leaves it off, so objects of deleted tenants go too.

The cluster is listed (or the operator's stores read) before the database is read: an instance's row is
committed before its pod can exist (the reconciler runs on commit), so a pod listed first always finds its
row if it has one.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.instances.states import State
from apps.operator import names
from apps.operator.client import REQUEST_TIMEOUT
from apps.operator.cluster import Cluster
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)


@dataclass
class GcReport:
    deleted: list[tuple[str, str, str]] = field(default_factory=list)  # kind, namespace, name

    def __bool__(self) -> bool:
        return bool(self.deleted)


# Items per LIST request: a list of thousands of pods is read in pages, so the operator never holds the
# whole answer as one body next to its decoded form.
LIST_PAGE = 500


def list_json(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a list endpoint and return the API's JSON (camelCase) without building client models: every
    item, and the list's resourceVersion (the pages are one snapshot, served at the first page's version).
    Items lose `metadata.managedFields` as they are decoded: nothing here reads them, and they are a large
    part of every object."""
    items: list[dict[str, Any]] = []
    version = None
    token = None
    while True:
        response = fn(
            *args,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
            limit=LIST_PAGE,
            **({"_continue": token} if token else {}),
            **kwargs,
        )
        page = json.loads(response.data)
        for item in page.get("items") or []:
            (item.get("metadata") or {}).pop("managedFields", None)
            items.append(item)
        meta = page.get("metadata") or {}
        version = version or meta.get("resourceVersion")
        token = meta.get("continue")
        if not token:
            return {"items": items, "metadata": {"resourceVersion": version}}


def _uuid(text: str | None) -> str | None:
    try:
        return str(uuid.UUID(text or ""))
    except ValueError:
        return None


@dataclass
class Seen:
    """gpucloud's pods, Services and namespaces as the operator's stores hold them (stores.py)."""

    pods: list[dict[str, Any]]
    services: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]


def collect(
    cluster: Cluster, region: Region, *, known_tenants_only: bool = False, seen: Seen | None = None
) -> GcReport:
    """`seen`: the objects from the operator's stores; without it, each kind is listed now."""
    report = GcReport()
    if seen is None:
        core, selector = cluster.core, names.managed_selector()

        def items(fn: Any) -> list[dict[str, Any]]:
            return list(list_json(fn, label_selector=selector).get("items") or [])

        seen = Seen(
            pods=items(core.list_pod_for_all_namespaces),
            services=items(core.list_service_for_all_namespaces),
            namespaces=items(core.list_namespace),
        )
    listed = [("Pod", item) for item in seen.pods] + [("Service", item) for item in seen.services]
    namespaces = seen.namespaces

    def labels(obj: dict[str, Any]) -> dict[str, str]:
        return (obj.get("metadata") or {}).get("labels") or {}

    instance_ids = {i for _k, o in listed if (i := _uuid(labels(o).get(names.INSTANCE_LABEL)))}
    tenant_ids = {
        t for o in [o for _k, o in listed] + namespaces if (t := _uuid(labels(o).get(names.TENANT_LABEL)))
    }
    live = {
        str(pk)
        for pk in Instance.objects.filter(pk__in=instance_ids, region=region)
        .exclude(state=State.TERMINATED)
        .values_list("pk", flat=True)
    }
    tenants = {
        str(pk): status for pk, status in Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "status")
    }

    for kind, obj in listed:
        meta = obj.get("metadata") or {}
        instance_id = _uuid(labels(obj).get(names.INSTANCE_LABEL))
        if instance_id is None or instance_id in live:
            continue  # tenant-level objects (no instance label) live as long as the namespace
        if known_tenants_only and _uuid(labels(obj).get(names.TENANT_LABEL)) not in tenants:
            continue
        if meta.get("deletionTimestamp"):
            continue
        for doomed_kind, name in (
            (kind, meta.get("name", "")),
            ("Secret", names.ssh_secret_name(instance_id)),
        ):
            if cluster.delete(doomed_kind, meta.get("namespace"), name):
                report.deleted.append((doomed_kind, meta.get("namespace", ""), name))
    for namespace in namespaces:
        meta = namespace.get("metadata") or {}
        tenant_id = _uuid(labels(namespace).get(names.TENANT_LABEL))
        if tenant_id is None or meta.get("deletionTimestamp"):
            continue
        status = tenants.get(tenant_id)
        closed = status == TenantStatus.CLOSED or (status is None and not known_tenants_only)
        if closed and cluster.delete("Namespace", None, meta.get("name", "")):
            report.deleted.append(("Namespace", "", meta.get("name", "")))
    for kind, namespace_name, name in report.deleted:
        logger.info("gc: deleted %s %s/%s in %s", kind, namespace_name, name, region.slug)
    return report
