"""Names of operator objects: valid DNS labels, stable across calls, distinct across tenants/instances."""

from __future__ import annotations

import uuid

import pytest

from apps.operator import names

SLUGS = ["acme", "Acme_Corp", "a" * 40, "---", "x", "UPPER-case", "dots.and_underscores", "9lives", ""]


@pytest.mark.parametrize("slug", SLUGS)
def test_namespace_name_is_a_stable_dns_label(slug: str) -> None:
    tenant_id = uuid.uuid4()
    name = names.namespace_name(tenant_id, slug)
    assert names.is_dns1123_label(name), name
    assert name.startswith("t-")
    assert name == names.namespace_name(str(tenant_id), slug)  # UUID or its text: the same name
    assert name == names.namespace_name(tenant_id, slug)


def test_namespace_name_reads_well_and_ends_in_the_tenant_hash() -> None:
    # Pinned: changing the scheme would orphan every existing namespace. d1bfaf4a is
    # sha256("3f2504e0-4f89-11d3-9a0c-0305e82c3301")[:8].
    tenant_id = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert names.namespace_name(tenant_id, "acme") == "t-acme-d1bfaf4a"
    assert names.namespace_name(tenant_id, "Acme_Corp") == "t-acme-corp-d1bfaf4a"
    assert names.namespace_name(tenant_id, "---") == "t-d1bfaf4a"
    long = names.namespace_name(tenant_id, "a" * 40 + "-b" * 20)
    assert len(long) <= 63 and long.endswith("-d1bfaf4a") and "--" not in long


def test_tenants_with_the_same_slug_text_get_different_namespaces() -> None:
    # Slugs are unique, but sanitising can make two different slugs read alike ("a_b" and "a-b").
    one, two = uuid.uuid4(), uuid.uuid4()
    assert names.namespace_name(one, "a_b") != names.namespace_name(two, "a-b")


def test_instance_names_are_stable_dns1035_labels() -> None:
    seen = set()
    for _ in range(200):
        instance_id = uuid.uuid4()
        name = names.instance_object_name(instance_id)
        assert names.is_dns1035_label(name) and names.is_dns1123_label(name)
        assert name == names.instance_object_name(str(instance_id)) == f"i-{instance_id.hex}"
        secret = names.ssh_secret_name(instance_id)
        assert names.is_dns1123_label(secret) and secret == f"{name}-ssh"
        seen.add(name)
    assert len(seen) == 200


def test_instance_name_refuses_what_is_not_a_uuid() -> None:
    with pytest.raises(ValueError):
        names.instance_object_name("../etc")


def test_common_labels() -> None:
    tenant_id, instance_id = uuid.uuid4(), uuid.uuid4()
    assert names.common_labels(tenant_id) == {
        "app.kubernetes.io/managed-by": "gpucloud",
        "gpucloud.io/tenant": str(tenant_id),
    }
    assert names.common_labels(str(tenant_id), instance_id) == {
        "app.kubernetes.io/managed-by": "gpucloud",
        "gpucloud.io/tenant": str(tenant_id),
        "gpucloud.io/instance": str(instance_id),
    }
    assert names.managed_selector() == "app.kubernetes.io/managed-by=gpucloud"
