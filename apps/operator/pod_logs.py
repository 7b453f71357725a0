"""Reading an instance's pod log for the console's log page and the API (registered with
apps/instances/logs.py). Reads with the region's logs credential (`get pods/log` in tenant namespaces only),
never the operator's."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from django.utils import timezone
from kubernetes.client.rest import ApiException

from apps.instances.logs import LogQuery, NoLog, PodLog, split_timestamp
from apps.operator import client, names
from apps.operator import cluster as cluster_module

logger = logging.getLogger(__name__)

# Bytes per asked line: the kubelet applies limitBytes to the start of the tail, so a cap too small for the
# tail would drop the newest lines. Between read_pod_log's 256 KiB and 8 MiB for the API's 10,000 lines.
BYTES_PER_LINE = 1024
MAX_LIMIT_BYTES = 8 * 1024 * 1024


def pod_log(*, instance: Any, query: LogQuery) -> PodLog:
    """The instance's pod log as asked, or why there is none: no logs kubeconfig for the region
    (NO_CREDENTIAL), no pod (NO_POD: the apiserver's 404), a container not started or no previous one
    (NO_CONTAINER: its 400), any other answer, error or timeout (ERROR; kwok pods have no logs). Never
    raises: logs are a convenience."""
    if not client.has_logs_credential(instance.region):
        return PodLog(missing=NoLog.NO_CREDENTIAL)
    options = kube_options(query, now=timezone.now())
    if options is None:
        return PodLog()  # since_time is in the future: nothing yet
    try:
        cluster = cluster_module.Cluster(client.logs_api_client(instance.region))
        text = cluster.read_pod_log(
            names.namespace_name(instance.tenant_id, instance.tenant.slug),
            names.instance_object_name(instance.pk),
            **options,
        )
    except ApiException as exc:
        if exc.status == 404:
            return PodLog(missing=NoLog.NO_POD)
        if exc.status == 400:  # "container .. is waiting to start", "previous terminated container not found"
            return PodLog(missing=NoLog.NO_CONTAINER)
        logger.warning("pod log refused", extra={"instance_id": str(instance.pk), "status": exc.status})
        return PodLog(missing=NoLog.ERROR)
    except Exception as exc:  # unreachable apiserver, timeout, a refused kubeconfig
        error = type(exc).__name__
        logger.warning("pod log unreadable", extra={"instance_id": str(instance.pk), "error": error})
        return PodLog(missing=NoLog.ERROR)
    capped = len(text.encode()) >= options.get("limit_bytes", cluster_module.POD_LOG_LIMIT_BYTES)
    if capped and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the cap cut the last line in the middle
    if query.since_time is not None:
        kept = [line for line in text.splitlines(keepends=True) if not _before(line, query.since_time)]
        if not query.timestamps:  # asked only to filter by them
            kept = [split_timestamp(line)[1] for line in kept]
        text = "".join(kept)
    return PodLog(text=text, capped=capped)


def kube_options(query: LogQuery, *, now: datetime) -> dict[str, Any] | None:
    """read_pod_log's keyword arguments for the query, only those asked for (None: nothing to read).

    The Python client cannot send sinceTime, so since_time is asked as since_seconds (rounded up, one second
    earlier to be safe) with timestamps, and the lines before it are dropped after reading (`_before`)."""
    options: dict[str, Any] = {}
    if query.tail_lines is not None:
        options["tail_lines"] = query.tail_lines
        if query.tail_lines * BYTES_PER_LINE > cluster_module.POD_LOG_LIMIT_BYTES:
            options["limit_bytes"] = min(MAX_LIMIT_BYTES, query.tail_lines * BYTES_PER_LINE)
    if query.since_seconds is not None:
        options["since_seconds"] = query.since_seconds
    if query.since_time is not None:
        seconds = (now - query.since_time).total_seconds()
        if seconds < -1:
            return None
        options["since_seconds"] = max(1, math.ceil(seconds) + 1)
        options["timestamps"] = True
    if query.previous:
        options["previous"] = True
    if query.timestamps:
        options["timestamps"] = True
    return options


def _before(line: str, since: datetime) -> bool:
    stamp = _parse_timestamp(split_timestamp(line)[0])
    return stamp is not None and stamp < since


def _parse_timestamp(stamp: str) -> datetime | None:
    """Kubernetes' RFC 3339 with up to nanoseconds ("2024-05-01T12:00:00.123456789Z"), to microseconds."""
    head, dot, rest = stamp.partition(".")
    if dot:
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        stamp = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
