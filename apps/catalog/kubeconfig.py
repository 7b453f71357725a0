"""What a region's kubeconfig may contain: credentials and certificates inline, and nothing that makes the
process reading it run a program or open a local file.

The kubernetes client acts on a kubeconfig as it loads it: `users[].user.exec` and `auth-provider` run
commands (or refresh tokens through them), and `tokenFile`, `client-certificate`, `client-key` and
`certificate-authority` read paths on the machine, whose content then goes to the server the same file names.
So a kubeconfig pasted in the admin could run code in the operator or send its ServiceAccount token (or any
readable file) to a server of the writer's choosing. `check_kubeconfig` allows only known keys whose values
are inline data, and an https server unless the region is a sandbox. It is pure (no files, no database) and is
used by the admin form, `seed_catalog`'s regions index, and the client before it builds a connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

# Keys that name a file or a command, with what to use instead. Refused even when an inline key is present,
# since which one a client prefers is its own choice.
REFUSED = {
    "exec": "running a command is not allowed; use a token or an inline client certificate",
    "auth-provider": "auth providers run commands or read files; use a token or an inline client certificate",
    "tokenFile": "file references are not allowed; put the token inline (token)",
    "client-certificate": "file references are not allowed; use client-certificate-data (base64)",
    "client-key": "file references are not allowed; use client-key-data (base64)",
    "certificate-authority": "file references are not allowed; use certificate-authority-data (base64)",
}
CLUSTER_KEYS = frozenset(
    {
        "server",
        "certificate-authority-data",
        "insecure-skip-tls-verify",
        "tls-server-name",
        "proxy-url",
        "disable-compression",
        "extensions",
    }
)
USER_KEYS = frozenset(
    {
        "token",
        "client-certificate-data",
        "client-key-data",
        "username",
        "password",
        "as",
        "as-uid",
        "as-groups",
        "as-user-extra",
        "extensions",
    }
)
CONTEXT_KEYS = frozenset({"cluster", "user", "namespace", "extensions"})
TOP_LEVEL_KEYS = frozenset(
    {"apiVersion", "kind", "clusters", "users", "contexts", "current-context", "preferences", "extensions"}
)


class KubeconfigError(ValueError):
    """A kubeconfig refused, naming the offending field (`users[0].user.exec`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KubeconfigError(field, "must be a mapping")
    return value


def _entries(data: dict[str, Any], key: str, inner: str) -> list[tuple[str, dict[str, Any]]]:
    """Each `key[i].inner` mapping with its field path; a missing list is an empty one."""
    items = data.get(key) or []
    if not isinstance(items, list):
        raise KubeconfigError(key, "must be a list")
    result = []
    for index, item in enumerate(items):
        path = f"{key}[{index}]"
        body = _mapping(item, path).get(inner)
        result.append((f"{path}.{inner}", _mapping(body if body is not None else {}, f"{path}.{inner}")))
    return result


def _check_keys(body: dict[str, Any], path: str, allowed: frozenset[str]) -> None:
    for key in body:
        if key in REFUSED:
            raise KubeconfigError(f"{path}.{key}", REFUSED[key])
        if key not in allowed:
            raise KubeconfigError(f"{path}.{key}", "unknown or unsupported field")
        inline_secret = key.endswith("-data") or key in ("token", "password")
        if inline_secret and not isinstance(body[key], str):
            raise KubeconfigError(f"{path}.{key}", "must be a string")


def _check_server(cluster: dict[str, Any], path: str, *, sandbox: bool) -> None:
    server = cluster.get("server")
    if not isinstance(server, str) or not server.strip():
        raise KubeconfigError(f"{path}.server", "the API server's URL is required")
    parts = urlsplit(server.strip())
    schemes = ("https", "http") if sandbox else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise KubeconfigError(
            f"{path}.server",
            "must be an http(s):// URL"
            if sandbox
            else "must be an https:// URL (plain http is allowed only for a region marked as a sandbox)",
        )
    if cluster.get("insecure-skip-tls-verify") and not sandbox:
        raise KubeconfigError(
            f"{path}.insecure-skip-tls-verify",
            "TLS verification may be skipped only for a region marked as a sandbox; give "
            "certificate-authority-data instead",
        )


def check_kubeconfig(text: str, *, sandbox: bool = False) -> dict[str, Any]:
    """The parsed kubeconfig if it is safe to load, else KubeconfigError naming the field. `sandbox`: the
    region is a local test cluster, whose server may be plain http or skip TLS verification."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError("", "Not valid YAML.") from exc
    if not isinstance(data, dict) or not data.get("clusters"):
        raise KubeconfigError("", "Not a kubeconfig (no clusters).")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise KubeconfigError(str(key), "unknown or unsupported field")
    for path, cluster in _entries(data, "clusters", "cluster"):
        _check_keys(cluster, path, CLUSTER_KEYS)
        _check_server(cluster, path, sandbox=sandbox)
    for path, user in _entries(data, "users", "user"):
        _check_keys(user, path, USER_KEYS)
    for path, context in _entries(data, "contexts", "context"):
        _check_keys(context, path, CONTEXT_KEYS)
    return data
