"""The launch path against the sandbox's real apiserver (docs/operator.md "The launch path"): the reconcile
creates the pod with no read first, reads only on a conflict (409, or 403 from the namespace's
ResourceQuota), applies the tenant's namespace objects only when the namespace is missing (a new tenant's
first launch), not on every launch, and applies them when the tenant's quota changes.

The cluster calls are counted by wrapping the Cluster's methods: each wrapper calls the real method."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import TestCase
from kubernetes.client.rest import ApiException

from apps.instances.models import Instance
from apps.operator.cluster import Cluster
from apps.operator.reconciler import reconcile
from apps.quotas.services import quota_for, quota_set
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect

pytestmark = pytest.mark.django_db

NAMESPACE_KINDS = {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "ServiceAccount"}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()

    def counting(name: str) -> Any:
        original = getattr(Cluster, name)

        def wrapper(self: Cluster, *args: Any, **kwargs: Any) -> Any:
            counts[f"apply {args[0]['kind']}" if name == "apply" else name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("apply", "create_pod", "read_pod", "read_service"):
        monkeypatch.setattr(Cluster, name, counting(name))
    yield counts


@pytest.fixture
def region(sandbox: Sandbox, catalog: Catalog) -> Any:
    return connect(catalog.us_east, sandbox)


def _launch(tenant: SandboxTenant, name: str) -> dict[str, Any]:
    return tenant.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name=name)


def _namespace_applies(counts: Counter[str]) -> int:
    return sum(n for key, n in counts.items() if key.removeprefix("apply ") in NAMESPACE_KINDS)


def test_launches_create_without_reading_and_namespace_objects_come_once(
    region: Any, tenant: SandboxTenant, calls: Counter[str]
) -> None:
    first = _launch(tenant, "first")  # a new tenant: its namespace is missing, the first creation says 404
    assert tenant.read_pod(first["id"]) is not None
    assert calls["apply Namespace"] == 1 and _namespace_applies(calls) >= 3
    assert calls["read_pod"] == 0, calls
    calls.clear()
    second = _launch(tenant, "second")
    assert tenant.read_pod(second["id"]) is not None
    assert _namespace_applies(calls) == 0, calls  # not per launch
    assert calls["read_pod"] == 0 and calls["read_service"] == 0, calls
    assert calls["create_pod"] == 1 and calls["apply Service"] == 1 and calls["apply Secret"] == 1, calls


def test_a_pod_that_exists_is_read_and_converged(
    region: Any, tenant: SandboxTenant, calls: Counter[str]
) -> None:
    launched = _launch(tenant, "again")
    calls.clear()
    reconcile(launched["id"])  # the pod exists: 409 (or the quota's 403), then one read, and it is recorded
    assert calls["create_pod"] == 1 and calls["read_pod"] == 1, calls
    assert Instance.objects.get(pk=launched["id"]).state in ("provisioning", "running")
    assert _namespace_applies(calls) == 0


def test_a_full_resource_quota_is_no_failure_for_the_pod_it_counts(
    region: Any, tenant: SandboxTenant, calls: Counter[str]
) -> None:
    quota = quota_for(tenant.actor.tenant)
    quota.max_gpus = 1
    quota.save()
    launched = _launch(tenant, "full")
    calls.clear()
    reconcile(launched["id"])  # 403 from the ResourceQuota before the name clash: read, it is ours
    assert calls["read_pod"] == 1 and _namespace_applies(calls) == 0, calls


def test_a_quota_change_applies_the_namespace_objects(
    region: Any, tenant: SandboxTenant, staff_user: Any
) -> None:
    _launch(tenant, "quota")

    def pods_limit() -> str:
        (resource_quota,) = tenant.core().list_namespaced_resource_quota(tenant.namespace).items
        return resource_quota.spec.hard["pods"]

    assert pods_limit() == str(quota_for(tenant.actor.tenant).max_instances)
    with TestCase.captureOnCommitCallbacks(execute=True):
        quota_set(actor=staff_user, tenant=tenant.actor.tenant, limits={"max_instances": 7})
    assert pods_limit() == "7"


def test_a_quota_change_of_a_tenant_with_nothing_applies_nothing(
    region: Any, tenant: SandboxTenant, staff_user: Any
) -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        quota_set(actor=staff_user, tenant=tenant.actor.tenant, limits={"max_instances": 7})
    with pytest.raises(ApiException) as missing:
        tenant.core().read_namespace(tenant.namespace)
    assert missing.value.status == 404
