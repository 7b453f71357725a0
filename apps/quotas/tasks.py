from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from apps.accounts.models import User
from apps.quotas.models import QuotaRequest


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_quota_request_email(request_id: str, event: str) -> None:
    request = QuotaRequest.objects.select_related("tenant", "requested_by").filter(pk=request_id).first()
    if request is None:
        return
    what = f"{request.get_resource_display()} to {request.amount}"
    if request.gpu_type_id:
        what += f" ({request.gpu_type}{' in ' + str(request.region) if request.region_id else ''})"
    if event == "created":
        staff = list(User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True))
        if staff:
            send_mail(
                subject=f"Quota request from {request.tenant.slug}: {what}",
                message=f"{request.requested_by.email} asks for {what}.\n\nReason: {request.reason}\n\n"
                f"Decide in the admin: {settings.SITE_URL}/admin/quotas/quotarequest/{request.pk}/change/",
                from_email=None,
                recipient_list=staff,
            )
        return
    send_mail(
        subject=f"Your quota request was {request.status}",
        message=f"Your request for {what} in {request.tenant.name} was {request.status}."
        + (f"\n\nNote from staff: {request.decision_note}" if request.decision_note else ""),
        from_email=None,
        recipient_list=[request.requested_by.email],
    )
