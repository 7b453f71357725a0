"""Suspension for non-payment and the way back: one path for a past-due invoice (enforce_past_due) and for a
prepaid wallet that a refund or chargeback left below zero. Suspending stops the tenant's instances (stopped,
never deleted; volumes kept); paying reactivates the tenant (invoice.paid, or a top-up that brings the
wallet back to zero or above)."""

from __future__ import annotations

import logging

from django.db import transaction

from apps.billing import stops
from apps.billing.models import BillingMode
from apps.billing.selectors import wallet_of
from apps.tenants.models import Tenant, TenantStatus
from apps.tenants.services import tenant_reactivate, tenant_suspend

logger = logging.getLogger(__name__)

PAST_DUE_REASON = "Suspended for non-payment: an invoice is past due."
REVERSED_REASON = (
    "Suspended for non-payment: a refund or chargeback of a top-up left the prepaid balance below zero; "
    "add credit to reactivate."
)


@transaction.atomic
def suspend_for_non_payment(*, tenant: Tenant, reason: str, stop_reason: stops.StopReason) -> None:
    """Suspend the tenant (when active): the suspension stops every instance it runs (apps.instances
    handles tenant_suspended), each stop recording `stop_reason`, and records what it stopped. A tenant
    staff already suspended has anything still running stopped all the same, through billing's stop."""
    if tenant.status == TenantStatus.ACTIVE:
        stop_reason = stops.StopReason(stop_reason)  # billing's reasons only, as on the other path
        tenant_suspend(actor=None, tenant=tenant, reason=reason, stop_reason=stop_reason.value)
    else:
        stops.tenant_instances_stop(tenant=tenant, reason=stop_reason)


@transaction.atomic
def suspend_if_below_zero(*, tenant: Tenant) -> bool:
    """After credit was taken back (a refund or a chargeback): a prepaid tenant whose balance is now below
    zero is suspended for non-payment and its instances stopped. Returns True if it was suspended now."""
    tenant.refresh_from_db(fields=["status", "status_reason"])
    w = wallet_of(tenant)
    # Postpaid: the reversal is owed on the next invoice; the credit limit and the stop loop still hold.
    if w.mode != BillingMode.PREPAID or w.balance >= 0 or tenant.status != TenantStatus.ACTIVE:
        return False
    logger.info("billing: suspending %s, balance %s after a reversal", tenant.slug, w.balance)
    suspend_for_non_payment(
        tenant=tenant, reason=REVERSED_REASON, stop_reason=stops.StopReason.PAYMENT_REVERSED
    )
    return True


@transaction.atomic
def reactivate_if_paid_up(*, tenant: Tenant) -> bool:
    """After money came in (a top-up, a dispute won): a tenant suspended because a reversal left it below
    zero is reactivated once the balance is zero or more. Other suspensions are left alone. Returns True if
    it was reactivated now."""
    tenant.refresh_from_db(fields=["status", "status_reason"])
    if tenant.status != TenantStatus.SUSPENDED or tenant.status_reason != REVERSED_REASON:
        return False
    if wallet_of(tenant).balance < 0:
        return False
    tenant_reactivate(actor=None, tenant=tenant)
    return True
