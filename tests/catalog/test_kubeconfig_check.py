"""check_kubeconfig: a region's kubeconfig may hold credentials only inline, run no command, read no file, and
name an https server (plain http, or skipping TLS verification, only for a region marked as a sandbox).

The refusals are table-tested here; tests/catalog/test_region_kubeconfig.py covers the admin form,
test_seed_catalog.py the regions index, and tests/operator/test_client_kubeconfig.py the client."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.catalog.kubeconfig import KubeconfigError, check_kubeconfig

SANDBOX_SH = Path(__file__).resolve().parents[2] / "sandbox" / "sandbox.sh"
DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def kubeconfig(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None, **top: Any) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "r",
                "cluster": {"server": "https://203.0.113.7:6443", "certificate-authority-data": DATA}
                | (cluster or {}),
            }
        ],
        "users": [{"name": "u", "user": {"token": "t0k3n"} if user is None else user}],
        "contexts": [{"name": "r", "context": {"cluster": "r", "user": "u"}}],
        "current-context": "r",
    }
    body.update(top)
    return yaml.safe_dump(body)


def refusal(text: str, *, sandbox: bool = False) -> str:
    with pytest.raises(KubeconfigError) as caught:
        check_kubeconfig(text, sandbox=sandbox)
    return caught.value.field


ALLOWED = {
    "token over https": kubeconfig(),
    "inline client certificate": kubeconfig(user={"client-certificate-data": DATA, "client-key-data": DATA}),
    "basic auth": kubeconfig(user={"username": "admin", "password": "secret"}),
    "impersonation": kubeconfig(user={"token": "t", "as": "ops", "as-groups": ["g"]}),
    "tls server name and a proxy": kubeconfig(
        cluster={"tls-server-name": "kubernetes", "proxy-url": "https://proxy.example.com:3128"}
    ),
    "explicitly verified": kubeconfig(cluster={"insecure-skip-tls-verify": False}),
    "preferences and namespace": kubeconfig(
        preferences={}, contexts=[{"name": "r", "context": {"cluster": "r", "user": "u", "namespace": "x"}}]
    ),
}


@pytest.mark.parametrize("text", list(ALLOWED.values()), ids=list(ALLOWED))
def test_safe_kubeconfigs_pass(text: str) -> None:
    assert check_kubeconfig(text)["clusters"]


REFUSED = {
    # running a command
    "exec plugin": (
        kubeconfig(user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh"}}),
        "users[0].user.exec",
    ),
    "auth provider": (
        kubeconfig(user={"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}),
        "users[0].user.auth-provider",
    ),
    # reading a local file (whose content would go to the server)
    "token file": (
        kubeconfig(user={"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
        "users[0].user.tokenFile",
    ),
    "token file next to an inline token": (
        kubeconfig(user={"token": "t", "tokenFile": "/etc/passwd"}),
        "users[0].user.tokenFile",
    ),
    "client certificate file": (
        kubeconfig(user={"client-certificate": "/etc/ssl/a.crt", "client-key-data": DATA}),
        "users[0].user.client-certificate",
    ),
    "client key file": (
        kubeconfig(user={"client-certificate-data": DATA, "client-key": "/etc/ssl/a.key"}),
        "users[0].user.client-key",
    ),
    "certificate authority file": (
        kubeconfig(cluster={"certificate-authority": "/etc/ssl/ca.crt"}),
        "clusters[0].cluster.certificate-authority",
    ),
    "an unknown user field": (
        kubeconfig(user={"token": "t", "cmd-path": "/bin/sh"}),
        "users[0].user.cmd-path",
    ),
    "an unknown cluster field": (
        kubeconfig(cluster={"certificate-file": "/x"}),
        "clusters[0].cluster.certificate-file",
    ),
    "an unknown context field": (
        kubeconfig(contexts=[{"name": "r", "context": {"cluster": "r", "exec": "/bin/sh"}}]),
        "contexts[0].context.exec",
    ),
    "an unknown top-level field": (kubeconfig(**{"exec": {"command": "x"}}), "exec"),
    "a token that is not a string": (kubeconfig(user={"token": ["a"]}), "users[0].user.token"),
    # the server
    "plain http": (kubeconfig(cluster={"server": "http://203.0.113.7:8080"}), "clusters[0].cluster.server"),
    "no scheme": (kubeconfig(cluster={"server": "203.0.113.7:6443"}), "clusters[0].cluster.server"),
    "a unix socket": (kubeconfig(cluster={"server": "unix:///run/k8s.sock"}), "clusters[0].cluster.server"),
    "no host": (kubeconfig(cluster={"server": "https://"}), "clusters[0].cluster.server"),
    "no server": (kubeconfig(cluster={"server": None}), "clusters[0].cluster.server"),
    "TLS verification skipped": (
        kubeconfig(cluster={"insecure-skip-tls-verify": True}),
        "clusters[0].cluster.insecure-skip-tls-verify",
    ),
    # not a kubeconfig at all
    "not YAML": ("clusters: [unclosed", ""),
    "no clusters": ("apiVersion: v1\nkind: Config\nusers: []\n", ""),
    "a list": ("- clusters\n", ""),
    "a cluster entry that is not a mapping": ("clusters: [just-a-name]\n", "clusters[0]"),
    "users not a list": (kubeconfig(users={"u": {}}), "users"),
}


@pytest.mark.parametrize(("text", "field"), list(REFUSED.values()), ids=list(REFUSED))
def test_dangerous_or_malformed_kubeconfigs_are_refused_naming_the_field(text: str, field: str) -> None:
    assert refusal(text) == field


def test_the_second_user_is_checked_too() -> None:
    data = yaml.safe_load(kubeconfig())
    data["users"].append({"name": "other", "user": {"exec": {"command": "curl"}}})
    assert refusal(yaml.safe_dump(data)) == "users[1].user.exec"


def test_the_message_names_the_field_and_what_to_do() -> None:
    with pytest.raises(KubeconfigError) as caught:
        check_kubeconfig(kubeconfig(user={"tokenFile": "/t"}))
    assert str(caught.value).startswith("users[0].user.tokenFile: ")
    assert "inline" in str(caught.value)


def test_a_sandbox_may_use_plain_http_and_skip_verification_but_still_not_exec_or_files() -> None:
    http = kubeconfig(cluster={"server": "http://127.0.0.1:8080"})
    insecure = kubeconfig(cluster={"insecure-skip-tls-verify": True})
    assert check_kubeconfig(http, sandbox=True)
    assert check_kubeconfig(insecure, sandbox=True)
    assert refusal(kubeconfig(user={"exec": {"command": "sh"}}), sandbox=True) == "users[0].user.exec"
    assert refusal(kubeconfig(user={"tokenFile": "/t"}), sandbox=True) == "users[0].user.tokenFile"
    assert refusal(kubeconfig(cluster={"server": "file:///etc/passwd"}), sandbox=True).endswith("server")


def sandbox_kubeconfig() -> str:
    """The kubeconfig sandbox/sandbox.sh writes for a region, from its heredoc, with sample certificates."""
    script = SANDBOX_SH.read_text()
    match = re.search(r'kubeconfig\(\) \{.*?cat >"\$file" <<EOF\n(.*?)\nEOF\n', script, re.S)
    assert match, "the kubeconfig() heredoc moved in sandbox/sandbox.sh"
    text = re.sub(r"\$\(base64 -w0 [^)]*\)", DATA, match.group(1))
    return text.replace("$port", "16443").replace("$name", "us-east-1").replace("$user", "admin")


def test_the_kubeconfigs_the_sandbox_writes_pass_without_the_sandbox_flag() -> None:
    text = sandbox_kubeconfig()
    data = check_kubeconfig(text)
    assert data["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    assert set(data["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
