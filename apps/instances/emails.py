"""The texts of instance emails and their recipients (sent by apps/instances/tasks.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import send_mail

from apps.instances.models import Instance
from apps.tenants.models import Membership
from apps.tenants.roles import Role

REASONS = {
    "not_ready": "its pod started but never became ready (nothing answered on its SSH port)",
    "no_capacity": "no node had room for it",
    "image_pull_error": "its image could not be pulled",
    "crash_loop": "its container kept exiting",
    "node_lost": "the node it ran on was lost",
    "insufficient_funds": "the tenant ran out of funds",
    "quota_exceeded": "it exceeded the tenant's quota",
}


def failed_recipients(instance: Instance) -> list[str]:
    """Whoever launched it (while still a member) and the tenant's owners and admins."""
    members = Membership.objects.filter(tenant_id=instance.tenant_id)
    emails = set(members.filter(role__in=[Role.OWNER, Role.ADMIN]).values_list("user__email", flat=True))
    if members.filter(user_id=instance.created_by_id).exists():
        emails.add(instance.created_by.email)
    return sorted(e for e in emails if e)


def send_failed(instance_id: Any) -> int:
    instance = Instance.objects.select_related("tenant", "created_by").filter(pk=instance_id).first()
    if instance is None or instance.state != "failed":
        return 0
    recipients = failed_recipients(instance)
    if not recipients:
        return 0
    tenant = instance.tenant
    why = REASONS.get(instance.failure_reason, instance.failure_reason or "of an internal error")
    send_mail(
        subject=f"[gpucloud] {tenant.name}: instance {instance.name} failed ({instance.failure_reason})",
        message=(
            f"Instance {instance.name} ({instance.pk}) in {tenant.name} ({tenant.slug}) failed: {why}.\n\n"
            f"{instance.state_message}\n\n"
            "It is no longer billed. Start it again, or terminate it, from the console or the API:\n"
            f"{settings.SITE_URL}/api/v1/tenants/{tenant.slug}/instances/{instance.pk}\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
