"""Running helm and kubectl against helm/gpucloud: the sandbox's binaries, rendered manifests as dicts.

A missing binary fails the test (never skips): `make test` builds both with the sandbox (sandbox/build.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "gpucloud"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
VERSIONS = REPO_ROOT / "sandbox" / "versions.env"
COMPONENTS = ("web", "worker", "beat", "operator")
# Settings that are secrets (config/settings/*.py): they may reach a pod only as secretKeyRef.
SECRET_SETTINGS = frozenset(
    {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "CACHE_URL",
        "CELERY_BROKER_URL",
        "EMAIL_HOST_PASSWORD",
        "FIELD_ENCRYPTION_KEYS",
        "LOGS_ENCRYPTION_KEYS",
        "STORAGE_ENCRYPTION_KEYS",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "OBJECT_STORAGE_ACCESS_KEY_ID",
        "OBJECT_STORAGE_SECRET_ACCESS_KEY",
    }
)

Manifest = dict[str, Any]


def _version(name: str) -> str:
    match = re.search(rf'^{name}="\$\{{{name}:-([^}}]+)\}}"', VERSIONS.read_text(), re.MULTILINE)
    assert match, f"{name} not found in {VERSIONS}"
    return os.environ.get(name) or match.group(1)


def _binary(env: str, component: str, version_var: str, name: str) -> str:
    cache = Path(os.environ.get("GPUCLOUD_CACHE_DIR") or Path.home() / ".cache" / "gpucloud")
    for candidate in (
        os.environ.get(env),
        str(cache / "bin" / f"{component}-{_version(version_var)}" / name),
        shutil.which(name),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} not found (set {env}, or build the sandbox: make sandbox)", pytrace=False)


def helm_bin() -> str:
    return _binary("GPUCLOUD_HELM", "helm", "HELM_VERSION", "helm")


def kubectl_bin() -> str:
    return _binary("GPUCLOUD_KUBECTL", "kubernetes", "K8S_VERSION", "kubectl")


def kube_version() -> str:
    """The sandbox's Kubernetes version: `helm template` checks the chart's kubeVersion against it."""
    return _version("K8S_VERSION").lstrip("v")


def run(
    args: Sequence[str], *, input_text: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )


def helm(
    *args: str, kubeconfig: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return run([helm_bin(), *args, *extra], timeout=timeout)


def template_text(*args: str, namespace: str = "gpucloud", release: str = "gc") -> str:
    result = helm(
        "template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version(), *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(*args: str, namespace: str = "gpucloud", release: str = "gc") -> list[Manifest]:
    text = template_text(*args, namespace=namespace, release=release)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def component(obj: Manifest) -> str | None:
    return (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def pick(docs: Iterable[Manifest], kind: str, comp: str | None = None) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind and (comp is None or component(d) == comp)]


def one(docs: Iterable[Manifest], kind: str, comp: str | None = None) -> Manifest:
    found = pick(docs, kind, comp)
    assert len(found) == 1, f"expected one {kind} {comp or ''}, found {len(found)}"
    return found[0]


def pod_templates(docs: Iterable[Manifest]) -> dict[str, Manifest]:
    """component -> pod template spec, for every Deployment and Job."""
    return {
        component(d) or d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env") or []}
