from decimal import ROUND_HALF_UP, Decimal

from celery import shared_task

from apps.billing import metering
from apps.instances.models import Instance
from apps.tenants.models import Membership
from apps.tenants.roles import Role


@shared_task(acks_late=True)
def meter_instance(instance_id: str) -> int:
    instance = Instance.objects.select_related("instance_type").filter(pk=instance_id).first()
    return metering.meter_instance(instance) if instance is not None else 0


@shared_task(acks_late=True)
def meter_all() -> int:
    return metering.meter_all()


@shared_task(acks_late=True)
def enforce_limits() -> int:
    from apps.billing import limits

    return limits.enforce_limits()


@shared_task(acks_late=True)
def check_budgets() -> int:
    from apps.billing import limits

    return limits.check_budgets()


@shared_task(acks_late=True)
def refresh_wallet_snapshots() -> int:
    from apps.billing import snapshots

    return snapshots.wallet_snapshots_refresh()


@shared_task(acks_late=True)
def send_budget_alert_email(alert_id: int) -> int:
    """Email the tenant's owners and billing members about a budget threshold."""
    from django.conf import settings
    from django.core.mail import send_mail

    from apps.billing.models import BudgetAlert

    alert = BudgetAlert.objects.select_related("tenant").filter(pk=alert_id).first()
    if alert is None:
        return 0
    recipients = sorted(
        Membership.objects.filter(tenant=alert.tenant, role__in=[Role.OWNER, Role.BILLING]).values_list(
            "user__email", flat=True
        )
    )
    if not recipients:
        return 0
    tenant = alert.tenant
    spend = alert.spend.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    send_mail(
        subject=f"[gpucloud] {tenant.name}: {alert.threshold}% of the monthly budget used",
        message=(
            f"Tenant {tenant.name} ({tenant.slug}) has spent {spend} of its "
            f"monthly budget of {alert.budget} in {alert.month:%B %Y} ({alert.threshold}% threshold).\n\n"
            f"Usage and budget: {settings.SITE_URL}/api/v1/tenants/{tenant.slug}/billing/budget\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
