"""Writing audit events. Every service that mutates state calls `audit_record` inside its transaction."""

from __future__ import annotations

from typing import Any

from django.db import models

from apps.audit.models import AuditEvent
from apps.core import request_context


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"field": {"from": old, "to": new}} for the fields whose values differ."""
    return {
        key: {"from": _plain(before.get(key)), "to": _plain(after.get(key))}
        for key in after
        if _plain(before.get(key)) != _plain(after.get(key))
    }


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    tenant: Any = None,
    changes: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record `action` by `actor` (a User, or None for the system) on `target` in `tenant`.

    The API token, IP, request id and channel come from the request context.
    """
    ctx = request_context.current()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = user.email if user is not None else f"system:{ctx.via}"
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_user=user,
        actor_token_id=ctx.token_id if user is not None else None,
        actor_label=label,
        via=ctx.via,
        action=action,
        target_type=target_type or "",
        target_id=target_id or "",
        changes={k: _plain(v) if not isinstance(v, dict) else v for k, v in (changes or {}).items()},
        metadata=metadata or {},
        ip=ctx.ip,
        request_id=ctx.request_id if ctx.request_id != "-" else "",
    )
