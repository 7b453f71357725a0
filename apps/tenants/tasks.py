from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from apps.tenants.models import Invitation


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
