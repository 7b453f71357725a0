"""The client checks a region's stored kubeconfig again before it builds a connection, so a kubeconfig stored
before the admin checked them (or written to the database some other way) cannot run a command or read a
file in the operator either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.catalog.models import Region
from apps.operator import client as kube_client

pytestmark = pytest.mark.django_db


def kubeconfig(user: dict[str, Any]) -> str:
    """A kubeconfig of one cluster at an address where nothing listens, with this user."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "r",
            "clusters": [{"name": "r", "cluster": {"server": "https://127.0.0.1:9"}}],
            "contexts": [{"name": "r", "context": {"cluster": "r", "user": "u"}}],
            "users": [{"name": "u", "user": user}],
        }
    )


def exec_kubeconfig(marker: Path) -> str:
    credential = json.dumps(
        {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": "from-the-plugin"},
        }
    )
    return kubeconfig(
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "/bin/sh",
                "args": ["-c", f"touch {marker}; echo '{credential}'"],
                "interactiveMode": "Never",
            }
        }
    )


def test_a_stored_kubeconfig_with_an_exec_plugin_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    region = Region(slug="legacy-1", name="Legacy")
    region.set_kubeconfig(exec_kubeconfig(marker))  # stored directly, as before the admin checked it
    region.save()

    with pytest.raises(kube_client.RegionNotConnected, match=r"users\[0\]\.user\.exec"):
        kube_client.api_client(region)

    assert not marker.exists()


def test_kubeconfig_from_file_checks_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "kubeconfig"
    path.write_text(exec_kubeconfig(marker))

    with pytest.raises(ValueError, match=r"users\[0\]\.user\.exec"):
        kube_client.kubeconfig_from_file(str(path))


def test_a_leaders_watches_and_workers_all_keep_their_connection_in_the_clients_pool() -> None:
    """A connection returned to a full pool is dropped, and the next request pays a new TLS handshake."""
    from django.conf import settings

    from apps.operator import concurrently
    from apps.operator.cluster import Cluster
    from apps.operator.operator_loop import OperatorConfig
    from apps.operator.stores import ClusterStores

    region = Region(slug="pooled-1", name="Pooled")
    region.set_kubeconfig(kubeconfig({"token": "t"}))
    region.save()
    api = kube_client.api_client(region)

    pool_size = api.rest_client.pool_manager.connection_pool_kw["maxsize"]
    assert pool_size == settings.KUBE_CLIENT_POOL_SIZE
    streams = len(ClusterStores(Cluster(api)).all()) + 1  # a watch per store, and the Events watch
    config = OperatorConfig()
    workers = config.pod_workers + config.change_workers + config.resync_workers + 1  # + the region loop
    workers += concurrently.MAX_THREADS  # Services and Secrets sent alongside the pods
    assert streams + workers <= pool_size
