"""Pure manifest builders: a frozen spec in, plain dicts (the Kubernetes JSON shape) out.

No API calls, no database, no clock: the same spec always gives the same dicts, byte for byte once
serialized with sorted keys (tests/operator/golden/ pins them). Every object carries
names.common_labels(). See docs/operator-objects.md for what each object is for.
"""

from __future__ import annotations

import base64
from typing import Any

from apps.operator import names
from apps.operator.cluster_nodes import CLUSTER_KEY_FILE
from apps.operator.specs import (
    ALWAYS_BLOCKED_EGRESS_CIDRS,
    InstancePodSpec,
    TenantNamespaceSpec,
    VolumeClaimSpec,
    normalize_cidrs,
)

Manifest = dict[str, Any]

SERVICE_ACCOUNT = "tenant"
RESOURCE_QUOTA = "tenant-quota"
LIMIT_RANGE = "tenant-defaults"
LOGS_ROLE_BINDING = "gpucloud-pod-logs"
CONTAINER = "instance"
SSH_VOLUME = "ssh-authorized-keys"
SSH_MOUNT_PATH = "/etc/gpucloud/ssh"
SSH_KEYS_FILE = "authorized_keys"
SSH_HOST_KEY_FILE = "ssh_host_ed25519_key"  # the server's host key, beside the keys in the same Secret
SSH_SERVICE_PORT = 22
RUN_AS = 1000
# The platform's SSH server (images/sshd/): the init container TOOLS_CONTAINER copies it from the tools image
# into the emptyDir TOOLS_VOLUME, mounted at TOOLS_PATH in both containers; the instance's container runs it
# as its first process, with the user's command under it. Its host key is kept in TOOLS_PATH/ssh.
TOOLS_CONTAINER = "gpucloud-tools"
TOOLS_VOLUME = "gpucloud-tools"
TOOLS_PATH = "/gpucloud"
SSH_SERVER = f"{TOOLS_PATH}/bin/gpucloud-sshd"
TOOLS_RESOURCES = {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "64Mi"}
# The user's writable home (an emptyDir: it lives as long as the pod; volumes are what persists).
HOME_VOLUME = "home"
HOME_PATH = "/home/gpucloud"
PSA_LEVEL = "restricted"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ZONE_LABEL = "topology.kubernetes.io/zone"  # the well-known label; capacity_nodes reads nodes' zones by it
GPU_TAINT_KEY = "nvidia.com/gpu"
TERMINATION_GRACE_SECONDS = 30
# Container defaults for anything in a tenant namespace that does not declare resources (our pods always
# do); requests = limits, so such a container is still Guaranteed and counted by the quota.
LIMIT_RANGE_DEFAULTS = {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "10Gi"}
DNS_PORT = 53
SMTP_PORT = 25
MAX_PORT = 65535
# Internet egress without outbound SMTP: a NetworkPolicy cannot say "every port but 25", so it lists TCP on
# either side of it and all of UDP (ranges need endPort: Kubernetes 1.25+ and a CNI that implements it).
# Other protocols (SCTP, ICMP) are then not allowed out; with allow_smtp_egress the rule names no ports.
EGRESS_PORTS_WITHOUT_SMTP = (
    {"protocol": "TCP", "port": 1, "endPort": SMTP_PORT - 1},
    {"protocol": "TCP", "port": SMTP_PORT + 1, "endPort": MAX_PORT},
    {"protocol": "UDP", "port": 1, "endPort": MAX_PORT},
)


def _metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(sorted(labels.items()))}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _gib(value: int) -> str:
    return f"{value}Gi"


# ---- per tenant and region ------------------------------------------------------------------------------


def make_namespace(spec: TenantNamespaceSpec) -> Manifest:
    """The tenant's namespace; Pod Security Admission enforces (and audits and warns on) `restricted`."""
    labels = names.common_labels(spec.tenant_id)
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = PSA_LEVEL
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(spec.namespace, None, labels)}


def make_resource_quota(spec: TenantNamespaceSpec) -> Manifest:
    """The tenant's quota again, enforced by the apiserver: a second wall behind our own admission."""
    hard = {f"requests.{resource}": str(count) for resource, count in spec.gpus}
    hard.update(
        {
            "requests.cpu": str(spec.cpu),
            "limits.cpu": str(spec.cpu),
            "requests.memory": _gib(spec.memory_gib),
            "limits.memory": _gib(spec.memory_gib),
            "pods": str(spec.max_pods),
            "persistentvolumeclaims": str(spec.max_pvcs),
            "requests.storage": _gib(spec.storage_gib),
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _metadata(RESOURCE_QUOTA, spec.namespace, names.common_labels(spec.tenant_id)),
        "spec": {"hard": dict(sorted(hard.items()))},
    }


def make_limit_range(spec: TenantNamespaceSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _metadata(LIMIT_RANGE, spec.namespace, names.common_labels(spec.tenant_id)),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": dict(LIMIT_RANGE_DEFAULTS),
                    "defaultRequest": dict(LIMIT_RANGE_DEFAULTS),
                }
            ]
        },
    }


def make_service_account(spec: TenantNamespaceSpec) -> Manifest:
    """The identity instance pods run as; it has no token mounted and no RBAC bindings."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(SERVICE_ACCOUNT, spec.namespace, names.common_labels(spec.tenant_id)),
        "automountServiceAccountToken": False,
    }


def _network_policy(spec: TenantNamespaceSpec, name: str, body: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, spec.namespace, names.common_labels(spec.tenant_id)),
        "spec": body,
    }


def _internet_egress_rule(spec: TenantNamespaceSpec, blocked: tuple[str, ...]) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(blocked)}}]}
    if not spec.allow_smtp_egress:
        rule["ports"] = [dict(port) for port in EGRESS_PORTS_WITHOUT_SMTP]
    return rule


def make_network_policies(spec: TenantNamespaceSpec) -> list[Manifest]:
    """Default deny in both directions, then allow: DNS to kube-dns; IPv4 internet egress except the
    blocked ranges (cluster pods and services, hence other tenants) and link-local (cloud metadata), and
    except TCP port 25 (SMTP) unless the region allows it; ingress to instance pods on the SSH port only."""
    blocked = normalize_cidrs([*spec.blocked_egress_cidrs, *ALWAYS_BLOCKED_EGRESS_CIDRS])
    all_pods: dict[str, Any] = {}
    return [
        _network_policy(
            spec, "default-deny", {"podSelector": all_pods, "policyTypes": ["Ingress", "Egress"]}
        ),
        _network_policy(
            spec,
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [
                            {"protocol": "UDP", "port": DNS_PORT},
                            {"protocol": "TCP", "port": DNS_PORT},
                        ],
                    }
                ],
            },
        ),
        _network_policy(
            spec,
            "allow-internet-egress",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [_internet_egress_rule(spec, blocked)],
            },
        ),
        _network_policy(
            spec,
            "allow-ssh-ingress",
            {
                "podSelector": {"matchExpressions": [{"key": names.INSTANCE_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": spec.ssh_port}]}],
            },
        ),
    ]


def make_logs_role_binding(spec: TenantNamespaceSpec) -> Manifest | None:
    """Lets the console's logs credential read pod logs here, and nothing else: a RoleBinding of the logs
    ClusterRole (`get pods/log` alone). The operator does not hold that right; it may only `bind` that one
    role, and the admission policy lets it bind only to these subjects (docs/operator-objects.md)."""
    reader = spec.logs_reader
    if reader is None:
        return None
    rbac = "rbac.authorization.k8s.io"
    subjects: list[dict[str, str]] = []
    for kind, name, namespace in reader.subjects:
        # A User is an RBAC subject (apiGroup rbac); a ServiceAccount a core one, with its namespace.
        subject = {"kind": kind, "name": name}
        subject.update({"namespace": namespace} if namespace else {"apiGroup": rbac})
        subjects.append(subject)
    return {
        "apiVersion": f"{rbac}/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(LOGS_ROLE_BINDING, spec.namespace, names.common_labels(spec.tenant_id)),
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": reader.cluster_role},
        "subjects": subjects,
    }


def make_namespace_objects(spec: TenantNamespaceSpec) -> list[Manifest]:
    """Everything of a tenant namespace, in the order to apply it (the namespace first)."""
    logs = make_logs_role_binding(spec)
    return [
        make_namespace(spec),
        make_resource_quota(spec),
        make_limit_range(spec),
        make_service_account(spec),
        *make_network_policies(spec),
        *([logs] if logs else []),
    ]


# ---- per instance ----------------------------------------------------------------------------------------


def make_ssh_secret(spec: InstancePodSpec) -> Manifest:
    """The instance's authorized_keys, one key per line, and its SSH host key (the same across stop and
    start: apps/operator/host_keys.py), mounted read-only into the pod."""
    content = "".join(f"{key}\n" for key in spec.authorized_keys)
    data = {SSH_KEYS_FILE: base64.b64encode(content.encode()).decode("ascii")}
    if spec.host_key:
        data[SSH_HOST_KEY_FILE] = base64.b64encode(spec.host_key.encode()).decode("ascii")
    if spec.cluster_key:
        data[CLUSTER_KEY_FILE] = base64.b64encode(spec.cluster_key.encode()).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(
            names.ssh_secret_name(spec.instance_id),
            spec.namespace,
            names.common_labels(spec.tenant_id, spec.instance_id),
        ),
        "type": "Opaque",
        "data": data,
    }


def _resources(spec: InstancePodSpec) -> dict[str, str]:
    amounts = {
        "cpu": str(spec.vcpu),
        "memory": _gib(spec.memory_gib),
        "ephemeral-storage": _gib(spec.ephemeral_disk_gib),
    }
    if spec.gpu_count and spec.gpu_resource:
        amounts[spec.gpu_resource] = str(spec.gpu_count)
    return dict(sorted(amounts.items()))


def _env(spec: InstancePodSpec) -> list[dict[str, str]]:
    env = dict(spec.env)
    # Ours win over the tenant's (validation already refuses the GPUCLOUD_ prefix).
    env["GPUCLOUD_INSTANCE_ID"] = spec.instance_id
    env["GPUCLOUD_SSH_PORT"] = str(spec.ssh_port)
    # With a host key in the Secret the server reads it there; without one it makes one in the emptyDir.
    env["GPUCLOUD_SSH_HOST_KEY_DIR"] = SSH_MOUNT_PATH if spec.host_key else f"{TOOLS_PATH}/ssh"
    env["HOME"] = HOME_PATH
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def _security_context() -> dict[str, Any]:
    """Pod Security `restricted` for one container: unprivileged, no capabilities, RuntimeDefault seccomp."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _tools_init_container(spec: InstancePodSpec) -> dict[str, Any]:
    """Copies the platform's static SSH server into the shared emptyDir: the tools image holds nothing but
    the server, which copies itself (no shell or cp needed). Requests = limits keep the pod Guaranteed."""
    return {
        "name": TOOLS_CONTAINER,
        "image": spec.tools_image,
        "imagePullPolicy": "Always",
        "command": ["/gpucloud-sshd", "install", f"{TOOLS_PATH}/bin"],
        "resources": {"requests": dict(TOOLS_RESOURCES), "limits": dict(TOOLS_RESOURCES)},
        "securityContext": _security_context(),
        "volumeMounts": [{"name": TOOLS_VOLUME, "mountPath": TOOLS_PATH}],
    }


def _home_is_a_volume(spec: InstancePodSpec) -> bool:
    """A volume attached at the home makes a home that persists across stop and start: then no emptyDir."""
    return any(v.mount_path == HOME_PATH for v in spec.volumes)


def _entrypoint(spec: InstancePodSpec) -> list[str]:
    """The platform's SSH server first, the user's command (command, then args) under it: its exit status
    becomes the container's. Without one the server alone runs (a machine to SSH into)."""
    user = [*spec.command, *spec.args]
    return [SSH_SERVER, "run", *(["--", *user] if user else [])]


def make_pod(spec: InstancePodSpec) -> Manifest:
    """The instance's pod: requests = limits (Guaranteed QoS), restricted security context, no token, no
    host namespaces or host paths, pinned to the GPU product by nodeSelector and tolerating the GPU taint.
    The platform brings its own SSH server (an init container copies it in), so any image works."""
    resources = _resources(spec)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        # Always: the registry checks the pull credentials of every pod, so an image another tenant's pod
        # left in the node's cache cannot be run without them.
        "imagePullPolicy": "Always",
        "command": _entrypoint(spec),
        "env": _env(spec),
        "ports": [{"name": "ssh", "containerPort": spec.ssh_port, "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": SSH_VOLUME, "mountPath": SSH_MOUNT_PATH, "readOnly": True},
            {"name": TOOLS_VOLUME, "mountPath": TOOLS_PATH},
            *([] if _home_is_a_volume(spec) else [{"name": HOME_VOLUME, "mountPath": HOME_PATH}]),
            *({"name": v.claim_name, "mountPath": v.mount_path} for v in spec.volumes),
        ],
        # Ready means the platform's SSH server answers: an SSH banner on its port, not just an open socket.
        "readinessProbe": {
            "exec": {"command": [SSH_SERVER, "probe", "--port", str(spec.ssh_port)]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [_tools_init_container(spec)],
        "containers": [container],
        "volumes": [
            {
                "name": SSH_VOLUME,
                "secret": {"secretName": names.ssh_secret_name(spec.instance_id), "defaultMode": 0o440},
            },
            {"name": TOOLS_VOLUME, "emptyDir": {"sizeLimit": TOOLS_RESOURCES["ephemeral-storage"]}},
            *([] if _home_is_a_volume(spec) else [{"name": HOME_VOLUME, "emptyDir": {}}]),
            # persistentVolumeClaim is a volume type the restricted Pod Security level allows; fsGroup above
            # makes the claim's files writable by the unprivileged user.
            *(
                {"name": v.claim_name, "persistentVolumeClaim": {"claimName": v.claim_name}}
                for v in spec.volumes
            ),
        ],
    }
    if spec.runtime_class_name:
        pod_spec["runtimeClassName"] = spec.runtime_class_name
    if spec.gpu_count:
        if spec.gpu_product_label:
            # MIG slices carry their parent GPU's product label; the MIG resource request does the rest.
            pod_spec["nodeSelector"] = {GPU_PRODUCT_LABEL: spec.gpu_product_label}
        pod_spec["tolerations"] = [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    if spec.zone:
        # Pinned by the launch or by its volume (a zonal disk is only reachable from its zone's nodes).
        pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), ZONE_LABEL: spec.zone}
    metadata = _metadata(spec.name, spec.namespace, names.common_labels(spec.tenant_id, spec.instance_id))
    metadata["annotations"] = {names.GENERATION_KEY: str(spec.generation)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def make_service(spec: InstancePodSpec) -> Manifest:
    """Port 22 of the region's access Service type, to the instance pod's SSH port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            spec.name, spec.namespace, names.common_labels(spec.tenant_id, spec.instance_id)
        ),
        "spec": {
            "type": spec.service_type,
            "selector": {names.INSTANCE_LABEL: spec.instance_id},
            "ports": [
                {"name": "ssh", "protocol": "TCP", "port": SSH_SERVICE_PORT, "targetPort": spec.ssh_port}
            ],
        },
    }


def owned_by(manifest: Manifest, *, api_version: str, kind: str, name: str, uid: str) -> Manifest:
    """The manifest with an owner (an object that exists, named with its uid), so that Kubernetes' garbage
    collector deletes it with the owner: the instance's Secret goes with its Service, and the operator never
    has to list Secrets to find leftovers (docs/operator-objects.md)."""
    reference = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    return {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [reference]}}


def make_pvc(spec: VolumeClaimSpec) -> Manifest:
    """A volume's claim. Immutable once bound but for the size, which only grows (apply it again to
    resize); without a storage class the cluster's default class serves it."""
    labels = names.common_labels(spec.tenant_id)
    labels[names.VOLUME_LABEL] = spec.volume_id
    body: dict[str, Any] = {
        "accessModes": [spec.access_mode],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": _gib(spec.size_gib)}},
    }
    if spec.storage_class:
        body["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(spec.name, spec.namespace, labels),
        "spec": body,
    }


def make_instance_objects(spec: InstancePodSpec) -> list[Manifest]:
    """Everything of one instance, in the order to apply it (the Secret before the pod that mounts it)."""
    return [make_ssh_secret(spec), make_pod(spec), make_service(spec)]
