"""Connections to regions' clusters: the only module that builds Kubernetes API clients.

A region connects in-cluster (the operator's ServiceAccount) or with its kubeconfig, decrypted only here
and only in memory. Clients are cached per region and kubeconfig, with request timeouts on every call.
In-cluster credentials exist only in a process whose pod mounts a ServiceAccount token: with the chart,
the operator's alone (`reachable_here`). The operator's kubeconfig is encrypted under
FIELD_ENCRYPTION_KEYS, which web does not hold; the console reads pod logs with the region's logs
kubeconfig instead (`logs_api_client`), whose identity may only `get pods/log` in tenant namespaces.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from typing import Any

from django.conf import settings
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from apps.catalog.kubeconfig import KubeconfigError, check_kubeconfig
from apps.catalog.models import Region

FIELD_MANAGER = "gpucloud"
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds)
# What a call to a cluster raises when the cluster refuses, is unreachable or is not configured.
CLUSTER_ERRORS = (ApiException, ConfigException, HTTPError, OSError)

_cache: dict[tuple[Any, str], client.ApiClient] = {}
_lock = threading.Lock()


class RegionNotConnected(ConfigException):
    """The region has no usable cluster connection (none stored, or a kubeconfig check_kubeconfig refuses).
    A ConfigException, so every caller that survives an unreachable cluster (reconcile, the operator's
    loops) survives this too, and logs it."""


def has_cluster(region: Region) -> bool:
    return region.in_cluster or region.has_kubeconfig


# Where the kubelet mounts the pod's ServiceAccount token (an attribute, so tests can point it elsewhere).
SERVICE_ACCOUNT_TOKEN = incluster_config.SERVICE_TOKEN_FILENAME


def in_cluster_credentials() -> bool:
    """Whether this process could load in-cluster configuration: the apiserver's address in its environment
    and a ServiceAccount token mounted (what `config.load_incluster_config` needs first)."""
    return (
        bool(os.environ.get(incluster_config.SERVICE_HOST_ENV_NAME))
        and bool(os.environ.get(incluster_config.SERVICE_PORT_ENV_NAME))
        and os.path.isfile(SERVICE_ACCOUNT_TOKEN)
    )


def reachable_here(region: Region) -> bool:
    """Whether this process can talk to the region's cluster: by its kubeconfig, or in-cluster when this
    process holds the pod's ServiceAccount token (web and worker pods mount none: only the operator does)."""
    if region.in_cluster:
        return in_cluster_credentials()
    return region.has_kubeconfig


def _pooled(configuration: client.Configuration) -> client.ApiClient:
    configuration.connection_pool_maxsize = int(settings.KUBE_CLIENT_POOL_SIZE)
    return client.ApiClient(configuration)


def _build(region: Region) -> client.ApiClient:
    if region.in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return _pooled(configuration)
    kubeconfig = region.get_kubeconfig()
    if not kubeconfig:
        raise RegionNotConnected(f"Region {region.slug} has no cluster connection.")
    try:
        # Checked again here: a kubeconfig stored before the admin checked it must not run a command or
        # read a file in this process either.
        check_kubeconfig(kubeconfig, sandbox=region.sandbox)
    except KubeconfigError as exc:
        raise RegionNotConnected(f"Region {region.slug}: its kubeconfig is refused: {exc}") from exc
    return _from_kubeconfig(kubeconfig, region.kubeconfig_context or None)


def _from_kubeconfig(kubeconfig: str, context: str | None) -> client.ApiClient:
    configuration = client.Configuration()
    # The loader wants a file for certificate data; a private temporary file, deleted at once.
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=True) as handle:
        handle.write(kubeconfig)
        handle.flush()
        config.load_kube_config(
            config_file=handle.name,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return _pooled(configuration)


def api_client(region: Region) -> client.ApiClient:
    fingerprint = (
        "in-cluster"
        if region.in_cluster
        # The sandbox flag decides what the kubeconfig may do (check_kubeconfig), so it is part of the key.
        else f"{hashlib.sha256(region.kubeconfig_encrypted.encode()).hexdigest()}:{region.sandbox}"
    )
    key = (region.pk, fingerprint)
    with _lock:
        if key not in _cache:
            _cache[key] = _build(region)
        return _cache[key]


def has_logs_credential(region: Region) -> bool:
    return region.has_logs_kubeconfig


def logs_api_client(region: Region) -> client.ApiClient:
    """A client with the region's logs kubeconfig (decrypted with LOGS_ENCRYPTION_KEYS, web's), never the
    operator's credential. Raises RegionNotConnected when the region has none, or when it is refused."""
    if not region.has_logs_kubeconfig:
        raise RegionNotConnected(f"Region {region.slug} has no logs kubeconfig.")
    digest = hashlib.sha256(region.logs_kubeconfig_encrypted.encode()).hexdigest()
    key = (region.pk, f"logs:{digest}:{region.sandbox}")
    with _lock:
        if key not in _cache:
            kubeconfig = region.get_logs_kubeconfig()
            try:
                check_kubeconfig(kubeconfig, sandbox=region.sandbox)
            except KubeconfigError as exc:
                refused = f"Region {region.slug}: its logs kubeconfig is refused: {exc}"
                raise RegionNotConnected(refused) from exc
            _cache[key] = _from_kubeconfig(kubeconfig, None)
        return _cache[key]


def kubeconfig_from_file(path: str, *, sandbox: bool = False) -> str:
    """Read a kubeconfig file that passes check_kubeconfig (for connecting a region to the sandbox)."""
    with open(path) as handle:
        text = handle.read()
    check_kubeconfig(text, sandbox=sandbox)
    return text
