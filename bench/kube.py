"""Kubernetes for the benchmarks: the sandbox instance `bench` (the standard fleet; `make bench` starts it),
a dedicated cluster of the benchmark's own (the instance `bench-dedicated`, started and stopped here), and
the baseline's pods: the operator's own pod manifest (apps/operator/manifests.make_pod) created
directly with the kubernetes client.

Neither is make run's instance (`default`) nor the tests' (`test`) (docs/sandbox.md, "Instances"): a
benchmark's pods never take capacity a test or the demo counts on, and neither disturbs a measurement.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench.common import REPO, VAR
from tests.fixtures.kube import Instance, Sandbox, create_namespace, delete_namespace

SANDBOX_SH = REPO / "sandbox" / "sandbox.sh"
BASH = shutil.which("bash") or "/bin/bash"
BASELINE_LABEL = "gpucloud-bench/baseline"
BENCH_REGION = "bench-1"
# Sandbox instances (sandbox/instance.sh gives each its own ports and state directory).
BENCH_INSTANCE = "bench"
DEDICATED_INSTANCE = "bench-dedicated"


def bench_sandbox() -> Sandbox:
    """The benchmarks' instance `bench` (make bench starts it; started here when it does not run)."""
    return Instance.named(BENCH_INSTANCE).start()


def api_client(kubeconfig: Path) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    # Enough connections for the concurrent clients of the burst benchmark.
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 64
    return api


# ---- the dedicated cluster -------------------------------------------------------------------------------


def bench_fleet(path: Path, *, cpu_nodes: int) -> Path:
    """A fleet file of one region, BENCH_REGION, with `cpu_nodes` CPU nodes shaped like the sandbox's."""
    shapes = yaml.safe_load((REPO / "sandbox" / "fleet.yaml").read_text())["shapes"]
    fleet = {
        "shapes": {"cpu64": shapes["cpu64"]},
        "regions": [
            {
                "name": BENCH_REGION,
                "zones": [f"{BENCH_REGION}a", f"{BENCH_REGION}b"],
                "storage": {"class": "sandbox-standard", "access_mode": "ReadWriteOnce", "expandable": True},
                "pools": [{"name": "cpu", "shape": "cpu64", "count": cpu_nodes}],
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return path


def _bench_env(fleet: Path) -> dict[str, str]:
    return Instance.named(DEDICATED_INSTANCE).env(
        GPUCLOUD_SANDBOX_FLEET=str(fleet),
        GPUCLOUD_SANDBOX_TIMEOUT="600",
        # Every instance has a Service: the default /24 runs out of ClusterIPs at about 250 instances.
        GPUCLOUD_SANDBOX_SERVICE_CIDR="10.96.0.0/16",
        GPUCLOUD_SANDBOX_NODE_PORT_RANGE="10000-32767",  # and of NodePorts at 2,768
    )


@contextmanager
def dedicated_cluster(name: str, *, cpu_nodes: int, progress: Any) -> Iterator[tuple[Path, Path]]:
    """A Kubernetes cluster of its own (the sandbox instance bench-dedicated with a bench fleet file: its own
    state directory and ports), so hundreds of nodes and thousands of pods load no other instance. Yields
    the kubeconfig and the fleet file; stopped (and its etcd data removed) afterwards."""
    fleet = bench_fleet(VAR / f"{name}-fleet.yaml", cpu_nodes=cpu_nodes)
    env = _bench_env(fleet)
    progress(f"starting a dedicated cluster ({cpu_nodes} nodes) in {env['GPUCLOUD_SANDBOX_DIR']}")
    log = VAR / "logs" / f"{name}-cluster.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("w") as handle:
            subprocess.run(  # noqa: S603 - our own script
                [BASH, str(SANDBOX_SH), "start"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=True,
            )
        index = json.loads((Path(env["GPUCLOUD_SANDBOX_DIR"]) / "sandbox.json").read_text())
        progress(f"dedicated cluster ready at {index['regions'][BENCH_REGION]['server']}")
        yield Path(index["regions"][BENCH_REGION]["kubeconfig"]), fleet
    finally:
        with log.open("a") as handle:
            subprocess.run(  # noqa: S603 - our own script
                [BASH, str(SANDBOX_SH), "stop"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        progress("dedicated cluster stopped")


# ---- the baseline: the same pod spec, created directly ----------------------------------------------------


def baseline_namespace(api: client.ApiClient) -> str:
    """A plain namespace with the ServiceAccount the pod spec names; nothing of gpucloud's in it."""
    from apps.operator import manifests

    name = f"gpucloud-bench-{uuid.uuid4().hex[:8]}"
    create_namespace(api, name, labels={"gpucloud-bench": "baseline"})
    client.CoreV1Api(api).create_namespaced_service_account(
        name,
        {"metadata": {"name": manifests.SERVICE_ACCOUNT}},  # type: ignore[arg-type]  # dicts serialize as is
    )
    return name


def baseline_pod(instance_id: Any, namespace: str, name: str) -> dict[str, Any]:
    """The operator's manifest of this instance's pod, renamed into the baseline namespace and without
    gpucloud's labels (the operator neither watches nor collects it)."""
    from apps.operator import manifests
    from apps.operator.reconciler import load_instance
    from apps.operator.specs import spec_from_instance

    instance = load_instance(instance_id)
    if instance is None:
        raise LookupError(f"no instance {instance_id}")
    pod = copy.deepcopy(manifests.make_pod(spec_from_instance(instance)))
    pod["metadata"] = {"name": name, "namespace": namespace, "labels": {BASELINE_LABEL: "true"}}
    return pod


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        status = core.read_namespaced_pod(name, namespace).status
        return status.phase if status is not None else None
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    phase: str | None,
    *,
    poll: float,
    timeout: float = 120.0,
) -> None:
    """Poll until the pod has `phase` (None: until it is gone)."""
    deadline = time.monotonic() + timeout
    while pod_phase(core, namespace, name) != phase:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {namespace}/{name} not {phase or 'gone'} after {timeout:.0f}s")
        time.sleep(poll)


def drop_namespace(api: client.ApiClient, name: str) -> None:
    delete_namespace(api, name)
