"""Deterministic, DNS-safe names and the one source of labels for every object the operator creates.

Names are pure functions of database ids, so a retried create can only ever collide with (never duplicate)
the object an earlier attempt made. Namespaces are DNS-1123 labels, instance objects DNS-1035 labels
(Service names must start with a letter), all at most 63 characters.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gpucloud"
TENANT_LABEL = "gpucloud.io/tenant"
INSTANCE_LABEL = "gpucloud.io/instance"
VOLUME_LABEL = "gpucloud.io/volume"
# The instance generation a pod was built for. An annotation on pods (it changes without changing
# identity); the key is shared so the reconciler and watcher read what the builders write.
GENERATION_KEY = "gpucloud.io/generation"
# On every object the operator applies: the digest of the manifest it sent (kube/applied.py).
APPLIED_DIGEST_KEY = "gpucloud.io/applied-digest"

MAX_NAME = 63
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

_NAMESPACE_PREFIX = "t-"
_HASH_LEN = 8
# "t-" + slug + "-" + 8 hex
_MAX_SLUG_PART = MAX_NAME - len(_NAMESPACE_PREFIX) - 1 - _HASH_LEN


def _digest(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def _dns_safe(text: str) -> str:
    """Lowercase letters, digits and single hyphens, no hyphen at either end (may be empty)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def is_dns1123_label(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(DNS1123_LABEL_RE.match(name))


def is_dns1035_label(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(DNS1035_LABEL_RE.match(name))


def namespace_name(tenant_id: Any, tenant_slug: str) -> str:
    """`t-<slug, truncated>-<8 hex of sha256(tenant id)>`: readable, unique per tenant, stable (slugs are
    immutable, and the hash alone tells tenants apart). The same name in every region's cluster."""
    slug = _dns_safe(tenant_slug)[:_MAX_SLUG_PART].rstrip("-")
    suffix = _digest(_uuid_text(tenant_id))[:_HASH_LEN]
    return f"{_NAMESPACE_PREFIX}{slug}-{suffix}" if slug else f"{_NAMESPACE_PREFIX}{suffix}"


def instance_object_name(instance_id: Any) -> str:
    """`i-<32 hex of the instance uuid>`: the name of the instance's pod and Service."""
    return f"i-{uuid.UUID(_uuid_text(instance_id)).hex}"


def ssh_secret_name(instance_id: Any) -> str:
    """The Secret holding the instance's authorized_keys."""
    return f"{instance_object_name(instance_id)}-ssh"


def volume_claim_name(volume_id: Any) -> str:
    """`v-<32 hex of the volume uuid>`: the volume's PersistentVolumeClaim (and its name in pod specs)."""
    return f"v-{uuid.UUID(_uuid_text(volume_id)).hex}"


def common_labels(tenant_id: Any, instance_id: Any = None) -> dict[str, str]:
    """The labels every gpucloud object carries: managed-by and tenant, plus the instance when given."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, TENANT_LABEL: _uuid_text(tenant_id)}
    if instance_id is not None:
        labels[INSTANCE_LABEL] = _uuid_text(instance_id)
    return labels


def managed_selector() -> str:
    """A label selector string for every object gpucloud manages (for lists and watches)."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def _uuid_text(value: Any) -> str:
    """Canonical text of a uuid (lowercase, hyphenated), whether given a UUID or a string."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
