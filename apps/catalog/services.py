"""Writes to the catalog that are not plain admin edits: a region's cluster credentials."""

from __future__ import annotations

from typing import Any

import yaml
from django.db import transaction

from apps.audit.services import audit_record
from apps.catalog.models import Region


def check_kubeconfig(text: str) -> str:
    """The text if it parses as a kubeconfig with clusters; ValueError naming the problem otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError("Not valid YAML.") from exc
    if not isinstance(data, dict) or not data.get("clusters"):
        raise ValueError("Not a kubeconfig (no clusters).")
    return text


def region_connect(
    *,
    actor: Any,
    region: Region,
    kubeconfig: str | None = None,
    context: str | None = None,
    logs_kubeconfig: str | None = None,
) -> Region:
    """Store the region's operator kubeconfig (and context) and/or its logs kubeconfig, each encrypted under
    its own key set; None leaves one as it is. Raises crypto.KeysUnavailable, before writing anything, in a
    process that lacks a needed key set (docs/operations.md, "Adding a region")."""
    fields = []
    if kubeconfig is not None:
        region.set_kubeconfig(check_kubeconfig(kubeconfig))
        fields.append("kubeconfig_encrypted")
    if context is not None:
        region.kubeconfig_context = context
        fields.append("kubeconfig_context")
    if logs_kubeconfig is not None:
        region.set_logs_kubeconfig(check_kubeconfig(logs_kubeconfig))
        fields.append("logs_kubeconfig_encrypted")
    if not fields:
        return region
    with transaction.atomic():
        region.save(update_fields=fields)
        # Which credentials changed, never their values.
        audit_record(actor=actor, action="region.connect", target=region, metadata={"fields": fields})
    return region
