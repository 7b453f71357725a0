"""gpucloud's command-line client (`gpucloud`) and Python client (`from gpucloud_cli import Client`)."""

from gpucloud_cli.client import (
    ApiError,
    Client,
    ClusterEnded,
    GpucloudError,
    InstanceEnded,
    TransportError,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "Client",
    "ClusterEnded",
    "GpucloudError",
    "InstanceEnded",
    "TransportError",
    "WaitTimeout",
]
