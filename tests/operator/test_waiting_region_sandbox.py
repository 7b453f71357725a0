"""A launch into a region whose cluster is not connected yet (`make run` on a fresh machine serves before the
sandbox is built): accepted, it stays pending with a message saying why, and starts as soon as the region is
connected, without waiting for the operator's next pass. Against the sandbox's real clusters; nothing mocked.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import TestCase
from kubernetes import client

from apps.catalog.management.commands.seed_catalog import connect_regions
from apps.core import build_status as bs
from apps.instances.models import Instance
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, drive, state_is

pytestmark = pytest.mark.django_db

NO_CONNECTION = "Region us-east-1 has no cluster connection yet; the instance starts once it is connected."


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, tenant_owner: Actor
) -> Any:
    sandbox_tenant = SandboxTenant(actor=tenant_owner, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


def connect_like_make_run(sandbox: Sandbox) -> list[str]:
    """What the bring-up's last step does: seed_catalog's connect_regions from the sandbox's index."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return connect_regions(sandbox.dir / "sandbox.json")


def test_a_launch_waits_with_a_message_and_runs_once_its_region_is_connected(
    tenant: SandboxTenant, sandbox: Sandbox, catalog: Catalog
) -> None:
    assert not catalog.us_east.has_kubeconfig

    launched = tenant.launch(region="us-east-1", instance_type="gpu-h100x1", image="pytorch")

    assert launched["state"] == "pending"
    detail = tenant.detail(launched["id"])
    assert (detail["state"], detail["state_message"]) == ("pending", NO_CONNECTION)
    assert tenant.read_pod(launched["id"]) is None

    assert "us-east-1" in connect_like_make_run(sandbox)

    # The connection queued its reconcile at once: the pod exists before any operator pass.
    assert tenant.read_pod(launched["id"]) is not None
    instance = drive(launched["id"], state_is("running"), what="running")
    assert instance.state_message == ""  # why it waited is over
    assert tenant.detail(launched["id"])["state_message"] == ""


def test_while_make_run_builds_the_message_says_how_long_is_left(
    tenant: SandboxTenant, sandbox: Sandbox, catalog: Catalog, settings: Any, tmp_path: Path
) -> None:
    settings.BUILD_STATUS_FILE = str(tmp_path / "build-status.json")
    now = time.time()
    bs.write(
        settings.BUILD_STATUS_FILE,
        {
            "pid": os.getpid(),
            "started": now - 30,
            "regions": ["us-east-1", "eu-west-1"],
            "expected_total": 900.0,
            "expected_by": {"regions": 540.0, "s3": 900.0},
            "pieces": [
                {"name": "kubernetes", "label": "k", "state": "running", "started": now - 60},
                {"name": "regions", "label": "r", "state": "waiting"},
            ],
        },
    )

    launched = tenant.launch(region="us-east-1", instance_type="gpu-h100x1", image="pytorch")

    message = Instance.objects.get(pk=launched["id"]).state_message
    # 540 s expected until the regions are connected, 30 s (and the test's own seconds) gone.
    wait = r"Waiting for region us-east-1's cluster to come up \(the local sandbox is building, "
    assert re.fullmatch(wait + r"about 8 min( \d+ s)? left\)\.", message), message
    assert tenant.detail(launched["id"])["state_message"] == message
