"""The one way billing stops a tenant's instances: when its runway ends (limits.enforce_limits), when an
invoice stays unpaid past the grace or a reversal leaves a prepaid wallet below zero (stripe/standing.py).

It calls the primitive apps.instances owns for stopping all of a tenant's instances (`instances_stop_all`,
which a tenant's suspension uses too), acting as the system and recording billing's reason on every stop.
Instances are stopped, never deleted; volumes are kept."""

from __future__ import annotations

from enum import StrEnum

from apps.instances.models import Instance
from apps.instances.services import instances_stop_all
from apps.tenants.models import Tenant


class StopReason(StrEnum):
    """Why billing stopped an instance, as its stop event and audit row record it."""

    INSUFFICIENT_FUNDS = "insufficient_funds"  # balance, credit limit or hard budget spent
    PAYMENT_PAST_DUE = "payment_past_due"  # an invoice unpaid past BILLING_PAST_DUE_GRACE_HOURS
    PAYMENT_REVERSED = "payment_reversed"  # a refund or chargeback left the prepaid balance below zero


def tenant_instances_stop(*, tenant: Tenant, reason: StopReason | str) -> list[Instance]:
    """Stop every instance of `tenant` that a stop applies to, each recording billing's `reason` (a
    StopReason; anything else is refused with ValueError before anything is stopped). Returns those now
    stopping."""
    return instances_stop_all(tenant=tenant, actor=None, reason=StopReason(reason).value)
