"""The volume parts of the manifest builders: the claim (golden files in tests/storage/golden/, refreshed
with UPDATE_GOLDEN=1 like tests/operator/golden/) and the pod that mounts claims, which stays
`restricted`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from apps.operator import manifests, names
from apps.operator.specs import VolumeClaimSpec, VolumeMountSpec
from apps.storage.validation import mount_path_problem
from tests.operator.test_manifests import FORBIDDEN_KEYS, GPU_POD, NAMESPACE, TENANT_ID, walk

GOLDEN = Path(__file__).parent / "golden"
VOLUME_ID = "0d9c3b1a-7e6f-4a5b-9c8d-1e2f3a4b5c6d"
OTHER_VOLUME_ID = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c"
CLAIM = VolumeClaimSpec(
    volume_id=VOLUME_ID,
    tenant_id=TENANT_ID,
    namespace=NAMESPACE,
    name=names.volume_claim_name(VOLUME_ID),
    size_gib=100,
    access_mode="ReadWriteOnce",
    storage_class="sandbox-standard",
)
POD_WITH_VOLUMES = dataclasses.replace(
    GPU_POD,
    volumes=(
        VolumeMountSpec(claim_name=names.volume_claim_name(VOLUME_ID), mount_path="/data"),
        VolumeMountSpec(
            claim_name=names.volume_claim_name(OTHER_VOLUME_ID), mount_path="/home/gpucloud/work"
        ),
    ),
)
CASES = {
    "pvc": lambda: manifests.make_pvc(CLAIM),
    "pvc_default_class_rwx": lambda: manifests.make_pvc(
        dataclasses.replace(CLAIM, storage_class=None, access_mode="ReadWriteMany")
    ),
    "pod_with_volumes": lambda: manifests.make_pod(POD_WITH_VOLUMES),
}


def assert_golden(name: str, actual: Any) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    assert actual == json.loads(path.read_text()), f"{name} differs from {path} (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_matches_its_golden_file(case: str) -> None:
    assert_golden(case, CASES[case]())


def test_every_golden_file_has_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(CASES)


def test_the_claim_is_a_valid_object_named_and_labelled_for_its_volume() -> None:
    claim = manifests.make_pvc(CLAIM)
    api = ApiClient()
    model = api._ApiClient__deserialize(claim, "V1PersistentVolumeClaim")  # type: ignore[attr-defined]
    assert api.sanitize_for_serialization(model) == claim
    assert claim["metadata"]["name"] == f"v-{VOLUME_ID.replace('-', '')}"
    labels = claim["metadata"]["labels"]
    assert (labels[names.TENANT_LABEL], labels[names.VOLUME_LABEL]) == (TENANT_ID, VOLUME_ID)
    assert names.INSTANCE_LABEL not in labels  # a volume outlives its instances
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert (
        "storageClassName" not in manifests.make_pvc(dataclasses.replace(CLAIM, storage_class=None))["spec"]
    )


def test_a_pod_mounting_claims_stays_restricted() -> None:
    pod = manifests.make_pod(POD_WITH_VOLUMES)
    api = ApiClient()
    model = api._ApiClient__deserialize(pod, "V1Pod")  # type: ignore[attr-defined]
    assert api.sanitize_for_serialization(model) == pod
    for path, key, _ in walk(pod):
        assert key not in FORBIDDEN_KEYS, f"{path}.{key}"
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [names.volume_claim_name(VOLUME_ID), names.volume_claim_name(OTHER_VOLUME_ID)]
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    claim_mounts = [(m["name"], m["mountPath"]) for m in mounts if m["name"].startswith("v-")]
    assert claim_mounts == [
        (names.volume_claim_name(VOLUME_ID), "/data"),
        (names.volume_claim_name(OTHER_VOLUME_ID), "/home/gpucloud/work"),
    ]
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000  # the unprivileged user can write the claims


def test_specs_refuse_bad_claims_and_mounts() -> None:
    with pytest.raises(ValueError, match="access_mode"):
        dataclasses.replace(CLAIM, access_mode="ReadOnlyMany")
    with pytest.raises(ValueError, match="size_gib"):
        dataclasses.replace(CLAIM, size_gib=0)
    with pytest.raises(ValueError, match="mount_path"):
        VolumeMountSpec(claim_name="v-1", mount_path="/")
    twice = VolumeMountSpec(claim_name="v-1", mount_path="/data")
    with pytest.raises(ValueError, match="twice"):
        dataclasses.replace(GPU_POD, volumes=(twice, dataclasses.replace(twice, claim_name="v-2")))


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/data", True),
        ("/home/gpucloud/checkpoints", True),
        ("/var/lib/postgresql", True),
        ("/mnt/my-data_1.v2", True),
        ("/", False),
        ("data", False),
        ("/data/", False),
        ("//data", False),
        ("/data/../etc", False),
        ("/./data", False),
        ("/etc", False),
        ("/etc/gpucloud/ssh", False),
        ("/gpucloud", False),  # the platform's SSH server
        ("/gpucloud/bin", False),
        ("/home/gpucloud", True),  # a volume may be the home: it then persists
        ("/usr", False),
        ("/proc/self", False),
        ("/dev/pts", False),
        ("/var/run/x", False),
        ("/data with space", False),
        ("/" + "a" * 255, False),
        (None, False),
    ],
)
def test_mount_paths(path: Any, ok: bool) -> None:
    assert (mount_path_problem(path) is None) is ok
