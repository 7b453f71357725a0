"""The manifest builders: golden files of whole objects, properties every manifest must keep, validation
against the official Kubernetes models, and the specs read from the database.

Golden files live in tests/operator/golden/, one JSON file per builder and case. A change to a
builder shows up as a diff there. To accept an intended change, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/operator/test_manifests.py -p no:cacheprovider
    git diff tests/operator/golden/
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from kubernetes.client import ApiClient

from apps.catalog.models import GpuType
from apps.instances.models import Instance
from apps.operator import host_keys, manifests, names
from apps.operator.specs import (
    InstancePodSpec,
    LogsReader,
    TenantNamespaceSpec,
    VolumeMountSpec,
    logs_reader_from,
    namespace_spec_for,
    spec_from_instance,
)
from apps.quotas.models import GpuQuota
from apps.quotas.services import quota_for

GOLDEN = Path(__file__).parent / "golden"
TENANT_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
INSTANCE_ID = "9b2e6c3a-1d4f-4e8a-b7c6-5d4e3f2a1b0c"
NAMESPACE = names.namespace_name(TENANT_ID, "acme")
KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0cGfJ4m2uS1s0b0mF9pZ0t5q3l6vWcJ8x1yQy9k2a ada@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7g2lq1m9yJp3v0c8xTqY5d6ZrW4s1e2b3n4m5k6j7h grace@desk",
)

NAMESPACE_SPEC = TenantNamespaceSpec(
    tenant_id=TENANT_ID,
    tenant_slug="acme",
    namespace=NAMESPACE,
    gpus=(("nvidia.com/mig-1g.10gb", 7), ("nvidia.com/gpu", 8)),
    cpu=256,
    memory_gib=2048,
    max_pods=10,
    max_pvcs=10,
    storage_gib=1000,
    blocked_egress_cidrs=("10.244.0.0/16", "10.0.0.0/24", "fd00::/8"),
    logs_reader=LogsReader(
        cluster_role="gpucloud-gpucloud-pod-logs",
        subjects=(("ServiceAccount", "gpucloud-logs", "gpucloud"), ("User", "gpucloud-logs", "")),
    ),
)

GPU_POD = InstancePodSpec(
    instance_id=INSTANCE_ID,
    tenant_id=TENANT_ID,
    namespace=NAMESPACE,
    name=names.instance_object_name(INSTANCE_ID),
    generation=3,
    image="nvcr.io/nvidia/pytorch:24.08-py3",
    gpu_resource="nvidia.com/gpu",
    gpu_count=2,
    gpu_product_label="NVIDIA-H100-80GB-HBM3",
    vcpu=48,
    memory_gib=440,
    ephemeral_disk_gib=1000,
    env=(("WANDB_PROJECT", "llm"), ("HF_HOME", "/data/hf")),
    authorized_keys=KEYS,
)
MIG_POD = dataclasses.replace(
    GPU_POD,
    gpu_resource="nvidia.com/mig-1g.10gb",
    gpu_count=1,
    vcpu=4,
    memory_gib=32,
    ephemeral_disk_gib=100,
    env=(),
)
CPU_POD = dataclasses.replace(
    GPU_POD,
    gpu_resource=None,
    gpu_count=0,
    gpu_product_label=None,
    vcpu=4,
    memory_gib=16,
    ephemeral_disk_gib=50,
    image="nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
    command=("/bin/sh", "-c", "exec sleep infinity"),
    authorized_keys=KEYS[:1],
)
RUNTIME_CLASS_POD = dataclasses.replace(GPU_POD, runtime_class_name="gvisor", gpu_count=1)
LOAD_BALANCER = dataclasses.replace(GPU_POD, service_type="LoadBalancer")
POD_SPECS = {"gpu": GPU_POD, "mig": MIG_POD, "cpu": CPU_POD, "runtime_class": RUNTIME_CLASS_POD}

GOLDEN_CASES: dict[str, Callable[[], Any]] = {
    "namespace": lambda: manifests.make_namespace(NAMESPACE_SPEC),
    "resource_quota": lambda: manifests.make_resource_quota(NAMESPACE_SPEC),
    "limit_range": lambda: manifests.make_limit_range(NAMESPACE_SPEC),
    "service_account": lambda: manifests.make_service_account(NAMESPACE_SPEC),
    "network_policies": lambda: manifests.make_network_policies(NAMESPACE_SPEC),
    "network_policies_smtp_allowed": lambda: manifests.make_network_policies(
        dataclasses.replace(NAMESPACE_SPEC, allow_smtp_egress=True)
    ),
    "role_binding_logs": lambda: manifests.make_logs_role_binding(NAMESPACE_SPEC),
    "pod_gpu": lambda: manifests.make_pod(GPU_POD),
    "pod_mig": lambda: manifests.make_pod(MIG_POD),
    "pod_cpu": lambda: manifests.make_pod(CPU_POD),
    "pod_runtime_class": lambda: manifests.make_pod(RUNTIME_CLASS_POD),
    "service_node_port": lambda: manifests.make_service(GPU_POD),
    "service_load_balancer": lambda: manifests.make_service(LOAD_BALANCER),
    "ssh_secret": lambda: manifests.make_ssh_secret(GPU_POD),
}

# The kubernetes client's model for each kind we build.
MODELS = {
    "Namespace": "V1Namespace",
    "ResourceQuota": "V1ResourceQuota",
    "LimitRange": "V1LimitRange",
    "ServiceAccount": "V1ServiceAccount",
    "NetworkPolicy": "V1NetworkPolicy",
    "RoleBinding": "V1RoleBinding",
    "Secret": "V1Secret",
    "Pod": "V1Pod",
    "Service": "V1Service",
}
FORBIDDEN_KEYS = {"hostPath", "hostNetwork", "hostPID", "hostIPC", "hostPort", "hostUsers", "privileged"}


def assert_golden(name: str, actual: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    assert actual == json.loads(path.read_text()), f"{name} differs from {path} (UPDATE_GOLDEN=1 to accept)"


def every_manifest() -> list[dict[str, Any]]:
    result = manifests.make_namespace_objects(NAMESPACE_SPEC)
    for spec in [*POD_SPECS.values(), LOAD_BALANCER]:
        result.extend(manifests.make_instance_objects(spec))
    return result


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) of a nested structure of dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


def resources_of(pod: dict[str, Any]) -> dict[str, Any]:
    [container] = pod["spec"]["containers"]
    return dict(container["resources"])


# ---- golden files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_manifest_matches_its_golden_file(case: str) -> None:
    assert_golden(case, GOLDEN_CASES[case]())


def test_every_golden_file_has_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(GOLDEN_CASES)


# ---- properties -----------------------------------------------------------------------------------------


def test_builders_are_deterministic_and_plain_json() -> None:
    first, second = every_manifest(), every_manifest()
    assert first == second
    assert json.loads(json.dumps(first)) == first  # only dicts, lists, str, int, bool: no tuples, no objects


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    """Round trip through the official client's models: an unknown or misspelt field is dropped by the
    model and shows up as a difference; a wrong type or a missing required field raises."""
    api = ApiClient()
    for manifest in every_manifest():
        model = api._ApiClient__deserialize(manifest, MODELS[manifest["kind"]])
        assert api.sanitize_for_serialization(model) == manifest, manifest["kind"]


def test_a_misspelt_field_would_be_caught_by_the_model_check() -> None:
    api = ApiClient()
    pod = manifests.make_pod(GPU_POD)
    pod["spec"]["nodeSelectr"] = pod["spec"].pop("nodeSelector")
    model = api._ApiClient__deserialize(pod, "V1Pod")
    assert api.sanitize_for_serialization(model) != pod


def test_no_manifest_reaches_the_host_or_asks_for_privilege() -> None:
    for manifest in every_manifest():
        for path, key, _value in walk(manifest):
            assert key not in FORBIDDEN_KEYS, f"{manifest['kind']} {path}.{key}"


def test_every_object_carries_the_common_labels() -> None:
    for manifest in every_manifest():
        labels = manifest["metadata"]["labels"]
        assert labels[names.MANAGED_BY_LABEL] == "gpucloud"
        assert labels[names.TENANT_LABEL] == TENANT_ID
        if manifest["kind"] in {"Pod", "Service", "Secret"}:
            assert labels[names.INSTANCE_LABEL] == INSTANCE_ID
        else:
            assert names.INSTANCE_LABEL not in labels
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("kind", sorted(POD_SPECS))
def test_pods_are_restricted_and_guaranteed(kind: str) -> None:
    spec = POD_SPECS[kind]
    pod = manifests.make_pod(spec)
    body = pod["spec"]
    [container] = body["containers"]
    [tools] = body["initContainers"]
    resources = resources_of(pod)
    assert resources["requests"] == resources["limits"]
    # The init container too: a pod is Guaranteed only when every container's requests equal its limits.
    assert tools["resources"]["requests"] == tools["resources"]["limits"]
    assert tools["securityContext"] == container["securityContext"]
    assert set(resources["limits"]) >= {"cpu", "memory", "ephemeral-storage"}
    assert body["automountServiceAccountToken"] is False
    assert body["serviceAccountName"] == "tenant"
    assert body["securityContext"]["runAsNonRoot"] is True
    assert body["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["runAsNonRoot"] is True
    # Every start asks the registry, so a private image cached on the node needs the credentials again.
    assert container["imagePullPolicy"] == "Always"
    secrets = [v["secret"]["secretName"] for v in body["volumes"] if "secret" in v]
    assert secrets == [names.ssh_secret_name(spec.instance_id)]
    # No hostPath or other volume type restricted Pod Security refuses: a secret, emptyDirs and claims.
    assert {key for v in body["volumes"] for key in v if key != "name"} <= {
        "secret",
        "emptyDir",
        "persistentVolumeClaim",
    }
    assert pod["metadata"]["annotations"] == {names.GENERATION_KEY: str(spec.generation)}


@pytest.mark.parametrize("kind", ["gpu", "mig", "runtime_class"])
def test_gpu_pods_request_exactly_their_gpus_on_the_right_product(kind: str) -> None:
    spec = POD_SPECS[kind]
    pod = manifests.make_pod(spec)
    resources = resources_of(pod)
    assert spec.gpu_resource is not None
    assert resources["requests"][spec.gpu_resource] == resources["limits"][spec.gpu_resource]
    assert resources["limits"][spec.gpu_resource] == str(spec.gpu_count)
    gpu_keys = {key for key in resources["limits"] if key.startswith("nvidia.com/")}
    assert gpu_keys == {spec.gpu_resource}  # a MIG pod asks for its slice, never a whole GPU
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_only_pods_have_no_gpu_resource_toleration_or_node_selector() -> None:
    pod = manifests.make_pod(CPU_POD)
    assert not [key for key in resources_of(pod)["limits"] if "nvidia.com" in key]
    assert "tolerations" not in pod["spec"]
    assert "nodeSelector" not in pod["spec"]
    assert "nvidia.com" not in json.dumps(pod)


def test_runtime_class_only_when_the_region_sets_one() -> None:
    assert manifests.make_pod(RUNTIME_CLASS_POD)["spec"]["runtimeClassName"] == "gvisor"
    assert "runtimeClassName" not in manifests.make_pod(GPU_POD)["spec"]


def test_env_is_sorted_with_ours_and_independent_of_input_order() -> None:
    reordered = dataclasses.replace(GPU_POD, env=tuple(reversed(GPU_POD.env)))
    assert manifests.make_pod(reordered) == manifests.make_pod(GPU_POD)
    [container] = manifests.make_pod(GPU_POD)["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == [
        "GPUCLOUD_INSTANCE_ID",
        "GPUCLOUD_SSH_HOST_KEY_DIR",
        "GPUCLOUD_SSH_PORT",
        "HF_HOME",
        "HOME",
        "WANDB_PROJECT",
    ]


def test_the_platform_ssh_server_runs_first_with_the_users_command_under_it() -> None:
    """Any image works: the init container copies the static server in, the instance's container starts it
    with the user's command (command, then args) after `--`, and readiness asks the server itself."""
    pod = manifests.make_pod(
        dataclasses.replace(CPU_POD, command=("python3", "train.py"), args=("--epochs", "3"))
    )
    [tools] = pod["spec"]["initContainers"]
    [container] = pod["spec"]["containers"]
    assert tools["image"] == CPU_POD.tools_image
    assert tools["command"] == ["/gpucloud-sshd", "install", "/gpucloud/bin"]
    assert container["command"] == [
        "/gpucloud/bin/gpucloud-sshd", "run", "--", "python3", "train.py", "--epochs", "3"
    ]  # fmt: skip
    assert "args" not in container
    shared = {m["mountPath"] for m in tools["volumeMounts"]} & {
        m["mountPath"] for m in container["volumeMounts"]
    }
    assert shared == {"/gpucloud"}
    assert container["readinessProbe"]["exec"]["command"] == [
        "/gpucloud/bin/gpucloud-sshd", "probe", "--port", str(CPU_POD.ssh_port)
    ]  # fmt: skip
    bare = manifests.make_pod(dataclasses.replace(CPU_POD, command=(), args=()))
    assert bare["spec"]["containers"][0]["command"] == ["/gpucloud/bin/gpucloud-sshd", "run"]


@pytest.mark.django_db
def test_a_volume_at_the_home_replaces_the_pods_own_home() -> None:
    """/home/gpucloud is an emptyDir (it lives as long as the pod) unless a volume is attached there: then
    the home persists across stop and start, and no second mount claims the same path."""
    plain = manifests.make_pod(CPU_POD)["spec"]
    assert {"name": "home", "emptyDir": {}} in plain["volumes"]
    claim = names.volume_claim_name("5f0c6b1e-3a2d-4c8b-9e7f-1a2b3c4d5e6f")
    at_home = dataclasses.replace(
        CPU_POD, volumes=(VolumeMountSpec(claim_name=claim, mount_path="/home/gpucloud"),)
    )
    spec = manifests.make_pod(at_home)["spec"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert [m["name"] for m in mounts if m["mountPath"] == "/home/gpucloud"] == [claim]
    assert "home" not in {v["name"] for v in spec["volumes"]}


@pytest.mark.django_db
def test_the_tools_image_comes_from_the_settings(
    make_instance: Callable[..., Instance], tenant_owner: Any, settings: Any
) -> None:
    settings.INSTANCE_TOOLS_IMAGE = "registry.example/gpucloud/instance-tools@sha256:" + "a" * 64
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="pending")
    spec = spec_from_instance(_loaded(instance))
    assert spec.tools_image == settings.INSTANCE_TOOLS_IMAGE
    assert manifests.make_pod(spec)["spec"]["initContainers"][0]["image"] == settings.INSTANCE_TOOLS_IMAGE


def test_the_host_key_is_the_instances_own_and_stays_the_same() -> None:
    """Derived from the secret and the instance id: stable across stop and start (no storage), different for
    every instance and every deployment secret, and its public half is what the API publishes."""
    one = host_keys.host_private_key("instance-1", secret="s1")
    assert one == host_keys.host_private_key("instance-1", secret="s1")
    assert one != host_keys.host_private_key("instance-2", secret="s1")
    assert one != host_keys.host_private_key("instance-1", secret="s2")
    assert one.startswith("-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(one.encode(), password=None)
    encoding, form = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    public = private.public_key().public_bytes(encoding, form)
    assert public.decode() == host_keys.host_public_key("instance-1", secret="s1")
    with pytest.raises(ValueError):
        host_keys.host_private_key("instance-1", secret="")


def test_a_host_key_is_derived_once_per_instance_and_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resync reads every running instance's public key and a reconcile its private one: derived once."""
    derived: list[str] = []
    derive = host_keys._private_key

    def counting(instance_id: Any, secret: str) -> Any:
        derived.append(str(instance_id))
        return derive(instance_id, secret)

    monkeypatch.setattr(host_keys, "_private_key", counting)
    for _ in range(3):
        host_keys.host_public_key("instance-cached", secret="s3")
        host_keys.host_private_key("instance-cached", secret="s3")
    assert derived == ["instance-cached", "instance-cached"]  # once for each half
    host_keys.host_public_key("instance-cached", secret="s4")  # another secret: another key
    assert len(derived) == 3


def test_the_secret_carries_the_host_key_and_the_server_reads_it_there() -> None:
    key = host_keys.host_private_key(INSTANCE_ID, secret="test")
    spec = dataclasses.replace(GPU_POD, host_key=key)
    secret = manifests.make_ssh_secret(spec)
    assert base64.b64decode(secret["data"]["ssh_host_ed25519_key"]).decode() == key
    [container] = manifests.make_pod(spec)["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GPUCLOUD_SSH_HOST_KEY_DIR"] == "/etc/gpucloud/ssh"  # the Secret's mount
    assert key not in repr(spec)  # a spec may be logged; the key may not
    assert "ssh_host_ed25519_key" not in manifests.make_ssh_secret(GPU_POD)["data"]


def test_ssh_secret_holds_the_keys_one_per_line() -> None:
    secret = manifests.make_ssh_secret(GPU_POD)
    assert base64.b64decode(secret["data"]["authorized_keys"]).decode() == f"{KEYS[0]}\n{KEYS[1]}\n"


def test_service_exposes_port_22_to_the_ssh_port_of_its_instance() -> None:
    service = manifests.make_service(GPU_POD)
    assert service["metadata"]["name"] == manifests.make_pod(GPU_POD)["metadata"]["name"]
    assert service["spec"]["selector"] == {names.INSTANCE_LABEL: INSTANCE_ID}
    assert service["spec"]["ports"] == [{"name": "ssh", "protocol": "TCP", "port": 22, "targetPort": 2222}]
    assert service["spec"]["type"] == "NodePort"
    assert manifests.make_service(LOAD_BALANCER)["spec"]["type"] == "LoadBalancer"


def test_namespace_enforces_restricted_pod_security() -> None:
    labels = manifests.make_namespace(NAMESPACE_SPEC)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_logs_reader_binding_grants_only_the_logs_role_to_its_subjects() -> None:
    binding = manifests.make_logs_role_binding(NAMESPACE_SPEC)
    assert binding is not None
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "gpucloud-gpucloud-pod-logs",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gpucloud-logs", "namespace": "gpucloud"},
        {"kind": "User", "name": "gpucloud-logs", "apiGroup": "rbac.authorization.k8s.io"},
    ]
    kinds = [m["kind"] for m in manifests.make_namespace_objects(NAMESPACE_SPEC)]
    assert kinds[0] == "Namespace" and kinds.count("RoleBinding") == 1


def test_without_a_logs_reader_nobody_is_bound() -> None:
    spec = dataclasses.replace(NAMESPACE_SPEC, logs_reader=None)
    assert manifests.make_logs_role_binding(spec) is None
    assert "RoleBinding" not in {m["kind"] for m in manifests.make_namespace_objects(spec)}


def test_logs_reader_from_the_settings_form() -> None:
    reader = logs_reader_from("r", ["User:gpucloud-logs", " ServiceAccount:gpucloud:gpucloud-logs"])
    assert reader == LogsReader(
        cluster_role="r",
        subjects=(("User", "gpucloud-logs", ""), ("ServiceAccount", "gpucloud-logs", "gpucloud")),
    )
    assert logs_reader_from("", ["User:x"]) is None


@pytest.mark.parametrize(
    "subjects", [[], ["Group:admins"], ["ServiceAccount:no-namespace"], ["User:"], ["system:masters"]]
)
def test_logs_reader_refuses_malformed_subjects(subjects: list[str]) -> None:
    with pytest.raises(ValueError):
        logs_reader_from("r", subjects)


def test_owned_by_names_the_owner_with_its_uid() -> None:
    secret = manifests.make_ssh_secret(GPU_POD)
    owned = manifests.owned_by(secret, api_version="v1", kind="Service", name=GPU_POD.name, uid="u-1")
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Service", "name": GPU_POD.name, "uid": "u-1"}
    ]
    assert "ownerReferences" not in secret["metadata"]  # the builder's own output is left as it was
    assert {k: v for k, v in owned["metadata"].items() if k != "ownerReferences"} == secret["metadata"]


def test_quota_caps_every_gpu_resource_and_the_rest() -> None:
    hard = manifests.make_resource_quota(NAMESPACE_SPEC)["spec"]["hard"]
    assert hard["requests.nvidia.com/gpu"] == "8"
    assert hard["requests.nvidia.com/mig-1g.10gb"] == "7"
    assert hard["requests.cpu"] == hard["limits.cpu"] == "256"
    assert hard["requests.memory"] == hard["limits.memory"] == "2048Gi"
    assert (hard["pods"], hard["persistentvolumeclaims"], hard["requests.storage"]) == ("10", "10", "1000Gi")


def test_network_policies_deny_by_default_and_open_only_dns_internet_and_ssh() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in manifests.make_network_policies(NAMESPACE_SPEC)}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    [dns] = policies["allow-dns"]["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    [internet] = policies["allow-internet-egress"]["egress"]
    [block] = internet["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    # the pod and service ranges, link-local (metadata); IPv6 is never opened, so it is not listed
    assert block["ipBlock"]["except"] == ["10.0.0.0/24", "10.244.0.0/16", "169.254.0.0/16"]
    assert internet["ports"] == [
        {"protocol": "TCP", "port": 1, "endPort": 24},
        {"protocol": "TCP", "port": 26, "endPort": 65535},
        {"protocol": "UDP", "port": 1, "endPort": 65535},
    ]
    ssh = policies["allow-ssh-ingress"]
    assert ssh["podSelector"] == {"matchExpressions": [{"key": names.INSTANCE_LABEL, "operator": "Exists"}]}
    assert ssh["ingress"] == [{"ports": [{"protocol": "TCP", "port": 2222}]}]
    assert "egress" not in ssh


def _open_ports(rule: dict[str, Any], protocol: str) -> set[int] | None:
    """The ports of `protocol` an egress rule lets out; None for all of them (a rule with no ports)."""
    if "ports" not in rule:
        return None
    opened: set[int] = set()
    for port in rule["ports"]:
        if port["protocol"] == protocol:
            opened.update(range(port["port"], port.get("endPort", port["port"]) + 1))
    return opened


def _internet_rule(spec: TenantNamespaceSpec) -> dict[str, Any]:
    [policy] = [
        p for p in manifests.make_network_policies(spec) if p["metadata"]["name"] == "allow-internet-egress"
    ]
    [rule] = policy["spec"]["egress"]
    return rule


def test_internet_egress_leaves_out_smtp_and_nothing_else_by_default() -> None:
    rule = _internet_rule(NAMESPACE_SPEC)
    tcp, udp = _open_ports(rule, "TCP"), _open_ports(rule, "UDP")
    assert tcp == set(range(1, 65536)) - {25}  # 465 and 587 (authenticated submission) stay open
    assert udp == set(range(1, 65536))
    assert NAMESPACE_SPEC.allow_smtp_egress is False  # the default


def test_a_region_that_allows_smtp_opens_every_port() -> None:
    rule = _internet_rule(dataclasses.replace(NAMESPACE_SPEC, allow_smtp_egress=True))
    assert _open_ports(rule, "TCP") is None and _open_ports(rule, "UDP") is None
    assert rule["to"] == _internet_rule(NAMESPACE_SPEC)["to"]


def test_overlapping_blocked_ranges_are_merged() -> None:
    spec = dataclasses.replace(
        NAMESPACE_SPEC, blocked_egress_cidrs=("10.0.0.0/8", "10.244.0.0/16", "169.254.169.254/32")
    )
    [policy] = [
        p for p in manifests.make_network_policies(spec) if p["metadata"]["name"] == "allow-internet-egress"
    ]
    assert policy["spec"]["egress"][0]["to"][0]["ipBlock"]["except"] == ["10.0.0.0/8", "169.254.0.0/16"]


@pytest.mark.parametrize(
    "changes",
    [
        {"gpu_count": 1, "gpu_resource": None},
        {"gpu_count": 0},
        {"service_type": "ExternalName"},
        {"name": "Not_DNS"},
        {"name": "9starts-with-digit"},
        {"namespace": "x" * 64},
        {"env": (("A", "1"), ("A", "2"))},
        {"vcpu": 0},
        {"ssh_port": 0},
        {"image": ""},
    ],
)
def test_pod_spec_refuses_inconsistent_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(GPU_POD, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"gpus": (("nvidia.com/gpu", 1), ("nvidia.com/gpu", 2))},
        {"blocked_egress_cidrs": ("10.0.0.0/33",)},
        {"namespace": "Bad"},
        {"cpu": -1},
    ],
)
def test_namespace_spec_refuses_inconsistent_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(NAMESPACE_SPEC, **changes)


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPU_POD.image = "evil"  # type: ignore[misc]


# ---- specs read from the database -----------------------------------------------------------------------


def _loaded(instance: Instance) -> Instance:
    return (
        Instance.objects.select_related("tenant", "region", "gpu_type")
        .prefetch_related("ssh_keys", "volume_attachments")
        .get(pk=instance.pk)
    )


@pytest.mark.django_db
def test_spec_from_instance_reads_the_instance_without_queries(
    make_instance: Callable[..., Instance], tenant_owner: Any, ssh_key: Any, django_assert_num_queries: Any
) -> None:
    instance = make_instance(
        tenant_owner.tenant,
        created_by=tenant_owner.user,
        state="pending",
        instance_type="gpu-h100-mig-1g10gb",
        env={"B": "2", "A": "1"},
        command=["python", "train.py"],
    )
    instance.ssh_keys.add(ssh_key)
    instance.region.runtime_class_name = "gvisor"
    instance.region.access_service_type = "LoadBalancer"
    instance.region.save()
    loaded = _loaded(instance)
    with django_assert_num_queries(0):
        spec = spec_from_instance(loaded)
    tenant = tenant_owner.tenant
    assert spec == InstancePodSpec(
        instance_id=str(instance.pk),
        tenant_id=str(tenant.pk),
        namespace=names.namespace_name(tenant.pk, tenant.slug),
        name=f"i-{instance.pk.hex}",
        generation=instance.generation,
        image="nvcr.io/nvidia/pytorch:24.08-py3",
        gpu_resource="nvidia.com/mig-1g.10gb",
        gpu_count=1,
        gpu_product_label="NVIDIA-H100-80GB-HBM3",
        vcpu=4,
        memory_gib=32,
        ephemeral_disk_gib=100,
        env=(("A", "1"), ("B", "2")),
        command=("python", "train.py"),
        runtime_class_name="gvisor",
        service_type="LoadBalancer",
        authorized_keys=(ssh_key.public_key,),
        host_key=host_keys.host_private_key(instance.pk, secret=settings.SECRET_KEY),
    )


@pytest.mark.django_db
def test_spec_from_a_cpu_instance_has_no_gpu(
    make_instance: Callable[..., Instance], tenant_owner: Any
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, instance_type="cpu-4x")
    spec = spec_from_instance(_loaded(instance))
    assert (spec.gpu_resource, spec.gpu_count, spec.gpu_product_label) == (None, 0, None)
    assert (spec.runtime_class_name, spec.service_type, spec.authorized_keys) == (None, "NodePort", ())
    pod = manifests.make_pod(spec)
    assert "tolerations" not in pod["spec"] and "nodeSelector" not in pod["spec"]


@pytest.mark.django_db
def test_namespace_spec_mirrors_the_tenant_quota(catalog: Any, tenant_owner: Any) -> None:
    tenant = tenant_owner.tenant
    quota = quota_for(tenant)
    quota.max_gpus, quota.max_volume_gib = 16, 500
    quota.save()
    mig = GpuType.objects.get(slug="h100-mig-1g10gb")
    h100 = GpuType.objects.get(slug="h100-80gb")
    limits = [
        GpuQuota.objects.create(tenant=tenant, gpu_type=mig, region=None, max_gpus=3),
        GpuQuota.objects.create(tenant=tenant, gpu_type=mig, region=catalog.eu_west, max_gpus=0),
        GpuQuota.objects.create(tenant=tenant, gpu_type=h100, region=catalog.us_east, max_gpus=4),
    ]
    region = catalog.us_east
    region.blocked_egress_cidrs = ["10.0.0.0/24", "10.244.0.0/16"]
    spec = namespace_spec_for(tenant, region, quota, gpu_types=list(GpuType.objects.all()), gpu_quotas=limits)
    assert spec == TenantNamespaceSpec(
        tenant_id=str(tenant.pk),
        tenant_slug=tenant.slug,
        namespace=names.namespace_name(tenant.pk, tenant.slug),
        # nvidia.com/gpu is shared by H100, A100 and L40S, and only H100 has a per-type limit
        gpus=(("nvidia.com/gpu", 16), ("nvidia.com/mig-1g.10gb", 3)),
        cpu=quota.max_vcpu,
        memory_gib=quota.max_memory_gib,
        max_pods=quota.max_instances,
        max_pvcs=500,  # a claim is at least 1 GiB: the storage limit bounds the number of claims
        storage_gib=500,
        blocked_egress_cidrs=("10.0.0.0/24", "10.244.0.0/16"),
    )
    # A region without its own list blocks the private ranges; nvidia.com/gpu is capped even with no types.
    region.blocked_egress_cidrs = []
    bare = namespace_spec_for(tenant, region, quota)
    assert bare.gpus == (("nvidia.com/gpu", 16),)
    assert bare.blocked_egress_cidrs == ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
    # SMTP egress follows the region's setting, closed unless it opens it.
    assert bare.allow_smtp_egress is False
    region.allow_smtp_egress = True
    assert namespace_spec_for(tenant, region, quota).allow_smtp_egress is True
