"""The gang builders (apps/operator/gang.py): a Workload whose one pod group must be placed whole, and pods
that name it."""

from __future__ import annotations

import uuid

import pytest

from apps.operator import gang, names

TENANT = uuid.UUID("3d0f2a64-6c1e-4a55-9a43-0b5c9d1e7f10")


def test_the_workload_holds_every_node_of_the_cluster_in_one_gang() -> None:
    workload = gang.make_gang(gang.GangSpec(name="c-1234", namespace="t-acme", tenant_id=TENANT, size=64))
    assert workload == {
        "apiVersion": "scheduling.k8s.io/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": "c-1234",
            "namespace": "t-acme",
            "labels": dict(sorted(names.common_labels(TENANT).items())),
        },
        "spec": {"podGroups": [{"name": "nodes", "policy": {"gang": {"minCount": 64}}}]},
    }


def test_a_gang_has_at_least_one_pod() -> None:
    with pytest.raises(ValueError, match="at least one pod"):
        gang.make_gang(gang.GangSpec(name="c", namespace="t", tenant_id=TENANT, size=0))


def test_a_pod_joins_the_gang_without_changing_the_pod_it_was_given() -> None:
    pod = {"metadata": {"name": "c-1234-0"}, "spec": {"containers": [{"name": "instance"}]}}
    joined = gang.join_gang(pod, "c-1234")
    assert joined["spec"]["workloadRef"] == {"name": "c-1234", "podGroup": "nodes"}
    assert joined["spec"]["containers"] == pod["spec"]["containers"]
    assert "workloadRef" not in pod["spec"]
    assert gang.gang_of(joined) == "c-1234"
    assert gang.gang_of(pod) is None
    assert gang.gang_of({"spec": {"workloadRef": {"name": "x", "podGroup": "other"}}}) is None
