"""Gang scheduling of a cluster's node pods: pure builders of the scheduler's gang objects.

A multi-node cluster's pods are placed all at once or not at all by kube-scheduler itself (its
GangScheduling plugin): the pods name a gang, and the scheduler binds none of them until it has found a
node for every one (docs/clusters.md, "Placement"). Kubernetes 1.35 expresses the gang as a Workload of
`scheduling.k8s.io/v1alpha1` with one pod group whose gang policy has a minimum count, and each pod points
at it with `spec.workloadRef`. The API is alpha: 1.36 replaced it (a standalone PodGroup, pods naming it
in `spec.schedulingGroup`), so everything that depends on its shape is in this module.

Pure, as manifests.py: a spec in, plain dicts out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from apps.operator import names

API_VERSION = "scheduling.k8s.io/v1alpha1"
KIND = "Workload"
POD_GROUP = "nodes"  # every node of a cluster is alike: one pod group, all of it the gang


@dataclass(frozen=True)
class GangSpec:
    name: str  # the Workload's name, and the cluster's object name in its namespace
    namespace: str
    tenant_id: Any
    size: int  # pods that must all be placed: the cluster's node count


def make_gang(spec: GangSpec) -> dict[str, Any]:
    """The Workload whose pod group holds the cluster's pods: none is bound before all `size` fit."""
    if spec.size < 1:
        raise ValueError(f"a gang has at least one pod, not {spec.size}")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": dict(sorted(names.common_labels(spec.tenant_id).items())),
        },
        "spec": {"podGroups": [{"name": POD_GROUP, "policy": {"gang": {"minCount": spec.size}}}]},
    }


def join_gang(pod: dict[str, Any], gang_name: str) -> dict[str, Any]:
    """A copy of `pod` that belongs to the gang: the scheduler holds it until the whole gang fits."""
    joined = copy.deepcopy(pod)
    joined.setdefault("spec", {})["workloadRef"] = {"name": gang_name, "podGroup": POD_GROUP}
    return joined


def gang_of(pod: dict[str, Any]) -> str | None:
    """The gang a pod (as the apiserver returns it) belongs to, or None."""
    ref = (pod.get("spec") or {}).get("workloadRef") or {}
    return ref.get("name") if ref.get("podGroup") == POD_GROUP else None
