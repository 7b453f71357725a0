"""Writes to the catalog that are not plain admin edits: a region's cluster credentials."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.audit.services import audit_record
from apps.catalog.kubeconfig import check_kubeconfig
from apps.catalog.models import Region
from apps.catalog.signals import region_connected


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
    process that lacks a needed key set, and KubeconfigError (a ValueError naming the field) for a
    kubeconfig that could run a command or read a file (apps/catalog/kubeconfig.py)."""
    fields = []
    for text in (kubeconfig, logs_kubeconfig):
        if text is not None:
            check_kubeconfig(text, sandbox=region.sandbox)
    if kubeconfig is not None:
        region.set_kubeconfig(kubeconfig)
        fields.append("kubeconfig_encrypted")
    if context is not None:
        region.kubeconfig_context = context
        fields.append("kubeconfig_context")
    if logs_kubeconfig is not None:
        region.set_logs_kubeconfig(logs_kubeconfig)
        fields.append("logs_kubeconfig_encrypted")
    if not fields:
        return region
    with transaction.atomic():
        region.save(update_fields=fields)
        # Which credentials changed, never their values.
        audit_record(actor=actor, action="region.connect", target=region, metadata={"fields": fields})
        if kubeconfig is not None:
            announce_connected(region)
    return region


def announce_connected(region: Region) -> None:
    """region_connected, once the transaction that connected it commits."""
    transaction.on_commit(lambda: region_connected.send(sender=Region, region=region))
