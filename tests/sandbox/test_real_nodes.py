"""The sandbox's real kubelet nodes (sandbox/realnodes.sh, docs/sandbox.md "Real nodes"), with the
administrator's client: they register with the GPU labels, taint and extended resource the product
schedules by, run real containers whose logs and exec work through the apiserver, reach each other's pods
across nodes, and their kubelets refuse anonymous requests. Nothing is mocked.

The product on them (SSH, volumes, NetworkPolicies, crashes, memory limits) is proven in
tests/operator/test_real_nodes_sandbox.py and tests/cli/test_real_nodes.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from kubernetes import client
from kubernetes.stream import stream

from tests.fixtures.kube import Sandbox

pytestmark = pytest.mark.sandbox

IMAGE = "gpucloud/instance-debian:bookworm"  # served by the sandbox's registry (sandbox/images.sh)
WAIT = 120.0  # seconds: a bound for a stuck node, not a performance assertion


def real_nodes(sandbox: Sandbox, region: str | None = None) -> list[dict[str, Any]]:
    nodes = sandbox.real_nodes.get("nodes") or []
    assert nodes, "the test instance runs no real nodes (sandbox.json has no real_nodes)"
    return [n for n in nodes if region is None or n["region"] == region]


def wait_until(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def test_real_nodes_register_with_the_gpu_labels_taint_and_resources(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient]
) -> None:
    regions = {n["region"] for n in real_nodes(sandbox)}
    assert len(real_nodes(sandbox, "us-east-1")) >= 2 and "eu-west-1" in regions
    for node in real_nodes(sandbox):
        seen = client.CoreV1Api(kube_clients[node["region"]]).read_node(node["name"])
        ready = {c.type: c.status for c in seen.status.conditions}["Ready"]
        assert ready == "True", node["name"]
        labels = seen.metadata.labels
        assert labels["type"] == "real"
        assert labels["nvidia.com/gpu.product"] == "SANDBOX-CPU"
        assert labels["topology.kubernetes.io/region"] == node["region"]
        assert labels["topology.kubernetes.io/zone"] == node["zone"]
        assert [(t.key, t.effect) for t in seen.spec.taints or []] == [("nvidia.com/gpu", "NoSchedule")]
        assert seen.status.capacity["nvidia.com/gpu"] == "2"
        assert seen.status.allocatable["nvidia.com/gpu"] == "2"
        addresses = {a.type: a.address for a in seen.status.addresses}
        assert addresses["InternalIP"] == node["address"]
        assert seen.status.node_info.kubelet_version.startswith("v1.35.")
        assert seen.status.node_info.container_runtime_version.startswith("containerd://2.")
        # A real kubelet, not kwok: kwok's nodes carry its annotation.
        assert "kwok.x-k8s.io/node" not in (seen.metadata.annotations or {})


def _pod(name: str, node: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": command,
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
    }


def test_pods_on_two_real_nodes_talk_and_their_logs_and_exec_work(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], make_namespace: Callable[..., str]
) -> None:
    first, second = real_nodes(sandbox, "us-east-1")[:2]
    core = client.CoreV1Api(kube_clients["us-east-1"])
    namespace = make_namespace(region="us-east-1")
    server = ["python3", "-u", "-c", "import http.server as h; print('serving', flush=True); "
              "h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"]  # fmt: skip
    core.create_namespaced_pod(namespace, _pod("server", first["name"], server))
    core.create_namespaced_pod(namespace, _pod("client", second["name"], ["sleep", "3600"]))

    def running(name: str) -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

    server_pod = wait_until(lambda: running("server"), "the server pod to run")
    wait_until(lambda: running("client"), "the client pod to run")
    assert server_pod.status.pod_ip.startswith(first["pod_cidr"].rsplit(".", 2)[0] + ".")

    # Logs come from the real container, through the apiserver and the node's kubelet.
    wait_until(lambda: "serving" in core.read_namespaced_pod_log("server", namespace), "the server's log")

    # Exec runs in the real container; from the other node, the server's pod answers on its pod IP.
    def fetch() -> str:
        return str(
            stream(
                core.connect_get_namespaced_pod_exec, "client", namespace,
                command=["python3", "-c", f"import urllib.request as u; print(u.urlopen("
                         f"'http://{server_pod.status.pod_ip}:8080/', timeout=5).status)"],
                stderr=True, stdout=True, stdin=False, tty=False,
            )
        )  # fmt: skip

    assert wait_until(lambda: "200" in fetch(), "the cross-node request")


def test_the_kubelets_refuse_anonymous_requests(sandbox: Sandbox) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    for node in real_nodes(sandbox):
        answer = requests.get(f"https://{node['address']}:10250/pods", verify=False, timeout=10)  # noqa: S501
        assert answer.status_code == 401, (node["name"], answer.status_code)
