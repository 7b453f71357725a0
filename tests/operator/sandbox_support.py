"""Shared helpers of the tests that run instances against the Kubernetes sandbox (test_*_sandbox.py).

Nothing here is mocked: regions are connected to the sandbox's real apiservers (kubeconfig stored encrypted on
the Region, as in production, for the operator's restricted identity gpucloud-operator), launches go through
the REST API with a tenant token, and reconciliation is driven by calling the reconciler itself
(`apps.operator.reconciler.reconcile`) in a bounded polling loop, the way the operator's watch and
resync would call it, so these tests do not depend on the operator process. Every tenant namespace a test
makes is deleted at teardown (`SandboxTenant.cleanup`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.test import TestCase
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.operator import names
from apps.operator.client import kubeconfig_from_file
from apps.operator.reconciler import reconcile
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox, delete_namespace

DRIVE_TIMEOUT = 90.0  # seconds; a bound for a hung cluster, not a performance assertion


def connect(region: Region, sandbox: Sandbox) -> Region:
    """Connect a catalog region to the sandbox cluster of the same name, as production does: the operator
    with its restricted identity (the chart's ClusterRole and admission policy, not the administrator), the
    console's pod logs with the logs identity."""
    region.set_kubeconfig(kubeconfig_from_file(str(sandbox.operator_kubeconfig_for(region.slug))))
    region.set_logs_kubeconfig(kubeconfig_from_file(str(sandbox.logs_kubeconfig_for(region.slug))))
    region.save()
    return region


def drive(
    instance_id: Any,
    until: Callable[[Instance], bool],
    *,
    what: str,
    timeout: float = DRIVE_TIMEOUT,
    interval: float = 0.3,
) -> Instance:
    """Reconcile the instance again and again until `until(instance)` holds; returns the fresh row."""
    deadline = time.monotonic() + timeout
    while True:
        reconcile(instance_id)
        instance = Instance.objects.get(pk=instance_id)
        if until(instance):
            return instance
        if time.monotonic() > deadline:
            raise AssertionError(
                f"instance never became {what} within {timeout:.0f}s: state={instance.state} "
                f"failure_reason={instance.failure_reason!r} message={instance.state_message!r}"
            )
        time.sleep(interval)


def state_is(*states: str) -> Callable[[Instance], bool]:
    return lambda instance: instance.state in states


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = DRIVE_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


@dataclass
class SandboxTenant:
    """A tenant owner whose tenant namespaces in the sandbox are removed after the test."""

    actor: Actor
    kube_clients: dict[str, client.ApiClient]
    regions: set[str] = field(default_factory=set)

    @property
    def namespace(self) -> str:
        return names.namespace_name(self.actor.tenant.pk, self.actor.tenant.slug)

    def core(self, region: str = "us-east-1") -> client.CoreV1Api:
        self.regions.add(region)
        return client.CoreV1Api(self.kube_clients[region])

    def net(self, region: str = "us-east-1") -> client.NetworkingV1Api:
        self.regions.add(region)
        return client.NetworkingV1Api(self.kube_clients[region])

    def launch(self, **body: Any) -> dict[str, Any]:
        """POST a launch with the tenant's token; returns the created instance's JSON. The on-commit
        reconcile task runs (eagerly) as it would after a real commit."""
        self.regions.add(body.get("region", "us-east-1"))
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = self.actor.token_client().post(self.actor.url("/instances"), body, format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    def act(self, instance_id: Any, action: str) -> dict[str, Any]:
        client_ = self.actor.token_client()
        url = self.actor.url(f"/instances/{instance_id}")
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = client_.delete(url) if action == "terminate" else client_.post(f"{url}/{action}")
        assert response.status_code == 202, response.json()
        return response.json()

    def detail(self, instance_id: Any) -> dict[str, Any]:
        response = self.actor.token_client().get(self.actor.url(f"/instances/{instance_id}"))
        assert response.status_code == 200, response.json()
        return response.json()

    def read_pod(self, instance_id: Any, region: str = "us-east-1") -> client.V1Pod | None:
        try:
            return self.core(region).read_namespaced_pod(
                names.instance_object_name(instance_id), self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def cleanup(self) -> None:
        for region in sorted(self.regions):
            delete_namespace(self.kube_clients[region], self.namespace)
