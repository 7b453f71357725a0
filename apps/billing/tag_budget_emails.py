"""The email of a tag budget's alert, sent by a Celery task once the alert is committed
(limits.check_tag_budgets): to the tenant's owners and billing members, like the tenant budget's."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from apps.billing.models import TagBudgetAlert
from apps.tenants.models import Membership
from apps.tenants.roles import Role


@shared_task(acks_late=True)
def send_tag_budget_alert_email(alert_id: int) -> int:
    """Email the tenant's owners and billing members about a tag budget's threshold. Returns how many."""
    alert = TagBudgetAlert.objects.select_related("tag_budget__tenant").filter(pk=alert_id).first()
    if alert is None:
        return 0  # the budget was deleted meanwhile
    budget = alert.tag_budget
    tenant = budget.tenant
    recipients = sorted(
        Membership.objects.filter(tenant=tenant, role__in=[Role.OWNER, Role.BILLING]).values_list(
            "user__email", flat=True
        )
    )
    if not recipients:
        return 0
    tag = f"{budget.key}={budget.value}"
    spend = alert.spend.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    send_mail(
        subject=f"[gpucloud] {tenant.name}: {alert.threshold}% of the budget for tag {tag} used",
        message=(
            f"Usage tagged {tag} in tenant {tenant.name} ({tenant.slug}) has cost {spend} of its monthly "
            f"budget of {alert.budget} in {alert.month:%B %Y} ({alert.threshold}% threshold). Tag budgets "
            "only alert: nothing is stopped.\n\n"
            f"Tag budgets: {settings.SITE_URL}/api/v1/tenants/{tenant.slug}/billing/tag-budgets\n"
            f"Usage by tag: {settings.SITE_URL}/api/v1/tenants/{tenant.slug}/billing/usage"
            f"?group_by=tag:{budget.key}\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
