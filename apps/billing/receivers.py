"""What billing does when lower apps announce a change (connected in BillingConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.billing import services
from apps.billing.tasks import meter_instance


def meter_instance_whose_billing_changed(
    sender: Any, *, instance_id: str, billing_changed: bool, billing_running: bool = False, **kwargs: Any
) -> None:
    """A billed interval ended: meter it once this commits, so the ledger closes it at once (the periodic
    task would, within its 30 s) (apps.instances.signals.instance_state_changed, sent inside the instance's
    transaction). One that began has billed nothing yet: the periodic task meters it as it runs, and a task
    per start was one more in the worker for every launch (burst_admission, docs/benchmarks.md)."""
    if billing_changed and not billing_running:
        transaction.on_commit(lambda: meter_instance.delay(instance_id))


def signup_credit_of_created_tenant(sender: Any, *, tenant: Any, actor: Any, **kwargs: Any) -> None:
    """Every new tenant starts with settings.BILLING_SIGNUP_CREDIT, none when 0
    (apps.tenants.signals.tenant_created)."""
    services.signup_credit_grant(tenant=tenant, actor=actor)
