"""What billing does when lower apps announce a change (connected in BillingConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.billing import services
from apps.billing.tasks import meter_instance


def meter_instance_whose_billing_changed(
    sender: Any, *, instance_id: str, billing_changed: bool, **kwargs: Any
) -> None:
    """A billed interval began or ended: meter it once this commits (the periodic task would too)
    (apps.instances.signals.instance_state_changed, sent inside the instance's transaction)."""
    if billing_changed:
        transaction.on_commit(lambda: meter_instance.delay(instance_id))


def signup_credit_of_created_tenant(sender: Any, *, tenant: Any, actor: Any, **kwargs: Any) -> None:
    """Every new tenant starts with settings.BILLING_SIGNUP_CREDIT, none when 0
    (apps.tenants.signals.tenant_created)."""
    services.signup_credit_grant(tenant=tenant, actor=actor)
