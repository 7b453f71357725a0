"""The console's logs reader in tenant namespaces, against the sandbox with the operator's restricted
identity (nothing mocked): the operator binds the pod-logs role there; it cannot bind any other role, and a
refused binding costs only the pod logs, never the instance."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is

pytestmark = pytest.mark.django_db

LAUNCH = {"instance_type": "cpu-4x", "region": "us-east-1", "image": "cuda-12"}


def _bindings(tenant: SandboxTenant) -> list[client.V1RoleBinding]:
    rbac = client.RbacAuthorizationV1Api(tenant.kube_clients["us-east-1"])
    return list(rbac.list_namespaced_role_binding(tenant.namespace).items)


def test_a_launch_binds_the_logs_role_for_the_logs_identity(sandbox: Any, tenant: SandboxTenant) -> None:
    connect(seed().us_east, sandbox)
    launched = tenant.launch(name="logged", **LAUNCH)
    drive(launched["id"], state_is("running"), what="running")

    [binding] = _bindings(tenant)
    assert binding.role_ref.name == "sandbox-gpucloud-pod-logs"
    assert [(s.kind, s.name) for s in binding.subjects] == [("User", "gpucloud-logs")]


def test_a_refused_logs_binding_costs_the_logs_not_the_instance(
    sandbox: Any, tenant: SandboxTenant, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """cluster-admin instead of the pod-logs role: the apiserver refuses the operator (it may bind only the
    pod-logs role: RBAC's escalation check), the instance runs anyway, nothing is bound."""
    settings.LOGS_READER_CLUSTER_ROLE = "cluster-admin"
    connect(seed().us_east, sandbox)
    launched = tenant.launch(name="unlogged", **LAUNCH)
    drive(launched["id"], state_is("running"), what="running")

    assert _bindings(tenant) == []
    assert "logs reader's RoleBinding" in caplog.text and "was refused" in caplog.text
