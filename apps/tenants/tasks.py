from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from apps.tenants.models import Invitation, Membership, Tenant
from apps.tenants.roles import Role


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: str, secret: str) -> None:
    invitation = Invitation.objects.select_related("tenant", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or invitation.state != "pending":
        return
    link = f"{settings.SITE_URL}{reverse('console:invitation_accept')}?token={secret}"
    send_mail(
        subject=f"You are invited to {invitation.tenant.name} on gpucloud",
        message=(
            f"{invitation.invited_by.email} invited you to join {invitation.tenant.name} "
            f"as {invitation.role}.\n\n"
            f"Accept within {settings.INVITATION_TTL_HOURS // 24} days: {link}\n\n"
            "If you did not expect this, ignore this email."
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


def _status_message(tenant: Tenant, kind: str, reason: str, instances: list[str]) -> tuple[str, str]:
    listed = "".join(f"  - {name}\n" for name in instances)
    if kind == "suspended":
        stopped = (
            f"Its running instances were stopped (not deleted; their volumes are kept):\n{listed}\n"
            if instances
            else "It had no running instances.\n\n"
        )
        return (
            f"[gpucloud] {tenant.name} is suspended",
            f"The tenant {tenant.name} ({tenant.slug}) was suspended. Reason: {reason}\n\n"
            f"{stopped}Nothing can be launched or started until it is reactivated; reads, stops and "
            "terminations still work.\n",
        )
    link = f"{settings.SITE_URL}{reverse('console:instances', args=[tenant.slug])}"
    stopped = (
        f"These instances were stopped by the suspension and stay stopped; start them when you need them:\n"
        f"{listed}\n"
        if instances
        else "The suspension stopped no instances.\n\n"
    )
    return (
        f"[gpucloud] {tenant.name} is active again",
        f"The tenant {tenant.name} ({tenant.slug}) was reactivated and can launch and start instances "
        f"again.\n\n{stopped}Instances: {link}\n",
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_status_email(tenant_id: str, kind: str, reason: str, instances: list[str]) -> int:
    """Email a tenant's owners and admins that it was suspended or reactivated (see notifications)."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return 0
    recipients = sorted(
        Membership.objects.filter(tenant=tenant, role__in=[Role.OWNER, Role.ADMIN]).values_list(
            "user__email", flat=True
        )
    )
    if not recipients:
        return 0
    subject, message = _status_message(tenant, kind, reason, instances)
    send_mail(subject=subject, message=message, from_email=None, recipient_list=recipients)
    return len(recipients)
