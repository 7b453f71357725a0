from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from apps.accounts.models import User


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_verification_email_task(user_id: int) -> None:
    from apps.accounts.services import email_verification_token

    user = User.objects.filter(pk=user_id).first()
    if user is None or user.email_verified:
        return
    link = f"{settings.SITE_URL}{reverse('verify_email')}?token={email_verification_token(user)}"
    send_mail(
        subject="Verify your email address for gpucloud",
        message=f"Welcome to gpucloud. Confirm this address within "
        f"{settings.EMAIL_VERIFICATION_TTL_HOURS} hours: {link}",
        from_email=None,
        recipient_list=[user.email],
    )
