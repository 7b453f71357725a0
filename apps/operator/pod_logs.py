"""Reading an instance's pod log for its log page (registered with apps/instances/logs.py)."""

from __future__ import annotations

from typing import Any

from apps.operator import client, names
from apps.operator import cluster as cluster_module


def pod_log_tail(*, instance: Any, tail_lines: int = 200) -> str | None:
    """The last lines of the instance's pod log, or None when there is none to read: no logs kubeconfig for
    the region, no pod, or any error or timeout on the way (kwok pods have no logs). Never raises. Reads
    with the region's logs credential (`get pods/log` in tenant namespaces only), never the operator's."""
    if not client.has_logs_credential(instance.region):
        return None
    try:
        cluster = cluster_module.Cluster(client.logs_api_client(instance.region))
        text = cluster.read_pod_log(
            names.namespace_name(instance.tenant_id, instance.tenant.slug),
            names.instance_object_name(instance.pk),
            tail_lines=tail_lines,
        )
    except Exception:  # logs are a convenience: any failure reads as "no logs yet"
        return None
    return text or None
