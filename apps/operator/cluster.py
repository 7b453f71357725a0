"""Typed, idempotent operations on one cluster: apply (server-side), read and delete by kind.

Every call has a timeout; 404 on delete and 409 on create mean "already so" and are not errors. Answers are
decoded from JSON as they come (`_json`), not built into client models first and turned back into dicts.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.operator import applied, recent
from apps.operator.client import FIELD_MANAGER, REQUEST_TIMEOUT

POD_LOG_LIMIT_BYTES = 256 * 1024  # the console's 200 lines; the API asks for more with a longer tail

Manifest = dict[str, Any]
APPLY = "application/apply-patch+yaml"
_PLURALS = {
    "Pod": "pods",
    "Workload": "workloads",
    "ConfigMap": "configmaps",
}  # the kinds create_as_is creates


def _json(response: Any) -> Manifest:
    """The body of a `_preload_content=False` call."""
    body: Manifest = json.loads(response.data)
    return body


class Cluster:
    def __init__(self, api: client.ApiClient):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)

    def _apply_fn(self, kind: str) -> Any:
        return {
            "Namespace": self.core.patch_namespace,
            "ResourceQuota": self.core.patch_namespaced_resource_quota,
            "LimitRange": self.core.patch_namespaced_limit_range,
            "ServiceAccount": self.core.patch_namespaced_service_account,
            "Secret": self.core.patch_namespaced_secret,
            "Service": self.core.patch_namespaced_service,
            "NetworkPolicy": self.net.patch_namespaced_network_policy,
            "ConfigMap": self.core.patch_namespaced_config_map,
            "PersistentVolumeClaim": self.core.patch_namespaced_persistent_volume_claim,
            "RoleBinding": self.rbac.patch_namespaced_role_binding,
        }[kind]

    @property
    def cluster_id(self) -> str:
        return str(self.api.configuration.host)

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply: creates or updates to exactly this manifest, as many times as needed."""
        meta = manifest["metadata"]
        fn = self._apply_fn(manifest["kind"])
        args = [meta["name"], meta["namespace"]] if "namespace" in meta else [meta["name"]]
        manifest_digest = applied.digest(manifest)
        result = fn(
            *args,
            applied.stamped(manifest, manifest_digest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
            _preload_content=False,
        )
        applied.cache.remember(applied.key_of(self.cluster_id, manifest), manifest_digest)
        body = _json(result)
        if manifest["kind"] == "Service":  # with its node port, which the pod watch needs next
            recent.cache.put(applied.key_of(self.cluster_id, manifest), body)
        return body

    def is_applied(self, manifest: Manifest) -> bool:
        """Whether this process applied the very same manifest recently (applied.py)."""
        return applied.cache.is_current(applied.key_of(self.cluster_id, manifest), applied.digest(manifest))

    def apply_changed(self, manifest: Manifest) -> bool:
        """Apply unless `is_applied`; True if sent."""
        if self.is_applied(manifest):
            return False
        self.apply(manifest)
        return True

    def create_pod(self, manifest: Manifest) -> Manifest | None:
        """Create the pod and return it as created; None if one with that name exists already (a retry
        never makes a second)."""
        try:
            pod = self.core.create_namespaced_pod(
                manifest["metadata"]["namespace"],
                manifest,  # type: ignore[arg-type]  # the client serializes plain dicts as they are
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return _json(pod)

    def create_as_is(self, manifest: Manifest) -> Manifest | None:
        """Create a namespaced object from its JSON exactly as given, and return it as created; None if one
        of that name exists already.

        For what the client's models cannot carry: they validate a body against the API they were
        generated from, which lacks alpha fields such as a pod's `workloadRef` (apps/operator/gang.py) and
        refuses them. The apiserver validates the object anyway."""
        meta = manifest["metadata"]
        group_version = manifest["apiVersion"]
        root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{root}/namespaces/{meta['namespace']}/{_PLURALS[manifest['kind']]}"
        method, url, headers, body, post = self.api.param_serialize(
            "POST",
            path,
            query_params=[("fieldManager", FIELD_MANAGER)],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=manifest,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, headers, body, post, _request_timeout=REQUEST_TIMEOUT)
        response.read()
        if response.status == 409:
            return None
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return _json(response)

    def _read(self, fn: Any, *args: str) -> Manifest | None:
        """One object, or None when it does not exist."""
        try:
            return _json(fn(*args, _request_timeout=REQUEST_TIMEOUT, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def read_pod(self, namespace: str, name: str) -> Manifest | None:
        return self._read(self.core.read_namespaced_pod, name, namespace)

    def read_service(self, namespace: str, name: str) -> Manifest | None:
        return self._read(self.core.read_namespaced_service, name, namespace)

    def read_pvc(self, namespace: str, name: str) -> Manifest | None:
        return self._read(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    def recent_service(self, namespace: str, name: str) -> Manifest | None:
        """The Service as applied or read within recent.TTL_SECONDS, else read now."""
        key = (self.cluster_id, "Service", namespace, name)
        found = recent.cache.get(key)
        if found is None:
            found = self.read_service(namespace, name)
            if found is not None:
                recent.cache.put(key, found)
        return found

    def recent_node(self, name: str) -> Manifest | None:
        key = (self.cluster_id, "Node", "", name)
        found = recent.cache.get(key)
        if found is None:
            found = self.read_node(name)
            if found is not None:
                recent.cache.put(key, found)
        return found

    def read_node(self, name: str) -> Manifest | None:
        return self._read(self.core.read_node, name)

    def read_pod_log(
        self,
        namespace: str,
        name: str,
        *,
        tail_lines: int | None = 200,
        since_seconds: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
        limit_bytes: int = POD_LOG_LIMIT_BYTES,
        timeout: float = 3,
    ) -> str:
        """The pod's log (the last tail_lines lines, those of the last since_seconds, the previous
        container's, each line after its RFC 3339 timestamp), with a short timeout: a slow or missing log is
        the caller's "no logs", never a stuck page. Options left at their defaults are not sent. Raises
        ApiException as the API answers."""
        options: dict[str, Any] = {"tail_lines": tail_lines, "since_seconds": since_seconds}
        options = {key: value for key, value in options.items() if value is not None}
        if previous:
            options["previous"] = True
        if timestamps:
            options["timestamps"] = True
        text = self.core.read_namespaced_pod_log(
            name, namespace, limit_bytes=limit_bytes, _request_timeout=(2, timeout), **options
        )
        return text if isinstance(text, str) else ""

    def force_delete_pod(self, namespace: str, name: str) -> bool:
        """Delete the pod with no grace period (what `kubectl delete --force --grace-period=0` does): for a
        pod on a lost machine, whose kubelet will never confirm a graceful end. True if it was there."""
        applied.cache.forget((self.cluster_id, "Pod", namespace, name))
        recent.cache.forget((self.cluster_id, "Pod", namespace, name))
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, _request_timeout=REQUEST_TIMEOUT
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete; True if it was there. Pods go in the background (grace period as set on the pod)."""
        fn: Any = {
            "Pod": self.core.delete_namespaced_pod,
            "Service": self.core.delete_namespaced_service,
            "Secret": self.core.delete_namespaced_secret,
            "Namespace": self.core.delete_namespace,
            "PersistentVolumeClaim": self.core.delete_namespaced_persistent_volume_claim,
        }[kind]
        args = [name, namespace] if namespace else [name]
        if kind == "Namespace":
            applied.cache.forget_namespace(self.cluster_id, name)
        else:
            applied.cache.forget((self.cluster_id, kind, namespace or "", name))
            recent.cache.forget((self.cluster_id, kind, namespace or "", name))
        try:
            fn(*args, _request_timeout=REQUEST_TIMEOUT)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
