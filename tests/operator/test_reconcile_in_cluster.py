"""In-cluster regions seen from a process without a ServiceAccount token (web and worker pods of the chart
mount none): the on-commit reconcile leaves the instance to the operator, quietly, and counts no error."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.operator import client as kube_client
from apps.operator import reconciler
from apps.operator.reconcile_instances import reconcile_instance
from tests.conftest import Actor
from tests.instances.helpers import Catalog

pytestmark = pytest.mark.django_db


def reconcile_count(outcome: str) -> float:
    labels = {"kind": "instance", "outcome": outcome}
    return REGISTRY.get_sample_value("gpucloud_reconcile_duration_seconds_count", labels) or 0.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pod_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What a pod's process sees: the apiserver's address in its environment (always set by the kubelet),
    and the token's path, where a token exists only if the pod mounts one (see the tests)."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(_closed_port()))
    token = tmp_path / "serviceaccount" / "token"
    monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT_TOKEN", str(token))
    return token


@pytest.fixture
def pending(catalog: Catalog, tenant_owner: Actor, make_instance: Any) -> Instance:
    Region.objects.filter(pk=catalog.us_east.pk).update(in_cluster=True)
    return make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="pending")


def test_without_a_token_the_reconcile_is_left_to_the_operator(
    pod_environment: Path, pending: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    assert not pod_environment.exists()
    errors, oks = reconcile_count("error"), reconcile_count("ok")
    with caplog.at_level(logging.DEBUG, logger="apps.operator.reconcile_instances"):
        reconcile_instance(pending.pk)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    (skipped,) = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped.levelno == logging.DEBUG and "us-east-1" in skipped.getMessage()
    assert reconcile_count("error") == errors  # no reconcile error for the alerts to fire on
    assert reconcile_count("ok") == oks  # and no pass that did not happen
    pending.refresh_from_db()
    assert pending.state == "pending"


def test_with_a_token_mounted_the_reconcile_runs(
    pod_environment: Path, pending: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_environment.parent.mkdir()
    pod_environment.write_text("a-token")
    called: list[Any] = []
    monkeypatch.setattr(reconciler, "reconcile", lambda pk, *, fresh: called.append((pk, fresh.pk)))
    reconcile_instance(pending.pk)
    assert called == [(pending.pk, pending.pk)]  # handed the row it loaded: not loaded twice


def test_reachable_here_by_kubeconfig_or_in_cluster_token(
    pod_environment: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = catalog.us_east
    assert not kube_client.reachable_here(region)  # no connection at all
    region.in_cluster = True
    assert not kube_client.reachable_here(region)  # no token
    pod_environment.parent.mkdir()
    pod_environment.write_text("a-token")
    assert kube_client.reachable_here(region)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not kube_client.reachable_here(region)  # not in a pod
    region.in_cluster = False
    region.set_kubeconfig("apiVersion: v1\nkind: Config\nclusters: []\n")
    assert kube_client.reachable_here(region)


def test_a_volume_without_a_token_is_left_to_the_operator(
    pod_environment: Path, catalog: Catalog, tenant_owner: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    from apps.operator.reconcile_volumes import reconcile_volume
    from apps.storage.models import Volume, VolumeState

    Region.objects.filter(pk=catalog.us_east.pk).update(in_cluster=True)
    volume = Volume.objects.create(
        tenant=tenant_owner.tenant,
        region=catalog.us_east,
        name="data",
        size_gib=10,
        storage_class="standard",
        access_mode="ReadWriteOnce",
        price_per_gib_hour="0.0001",
        created_by=tenant_owner.user,
    )
    labels = {"kind": "volume", "outcome": "error"}
    errors = REGISTRY.get_sample_value("gpucloud_reconcile_duration_seconds_count", labels) or 0.0
    with caplog.at_level(logging.DEBUG, logger="apps.operator.reconcile_volumes"):
        reconcile_volume(volume.pk)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("skipped" in r.getMessage() for r in caplog.records)
    assert (REGISTRY.get_sample_value("gpucloud_reconcile_duration_seconds_count", labels) or 0.0) == errors
    volume.refresh_from_db()
    assert volume.state == VolumeState.CREATING  # the operator's resync creates the claim
