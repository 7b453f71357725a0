"""A pod event (watcher.PodHandler) that shows an instance Ready reads the instance once, with its tenant and
region, and writes running: no read of its SSH keys, volumes, GPU or instance type (only a reconcile, which
builds the pod, needs those). The cold start turns every pod Running through here, several events each.

The cluster behind `Cluster` is an address where nothing listens: the stores answer for Service and node."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.instances.models import Instance
from apps.operator.watcher import PodHandler
from tests.conftest import Actor
from tests.operator.ready_pods import nowhere, starting_with_ready_pod, stores_with_service

pytestmark = pytest.mark.django_db


def test_a_ready_pod_event_reads_the_instance_once_and_writes_running(
    make_instance: Any, tenant_owner: Actor
) -> None:
    starting = starting_with_ready_pod(make_instance, tenant_owner)
    made, pod = starting.made, starting.pod
    stores = stores_with_service(starting.namespace, starting.name)
    handler = PodHandler(made.region_id, nowhere(), lookup=lambda: stores)

    with CaptureQueriesContext(connection) as queries:
        handler("MODIFIED", pod)

    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "pg_notify" not in q["sql"]
    ]
    assert len(reads) == 1, reads
    assert "tenants_tenant" in reads[0] and "catalog_region" in reads[0]
    row = Instance.objects.get(pk=made.pk)
    assert row.state == "running" and row.connection["port"] == 31022
