"""What billing does when lower apps announce a change (connected in BillingConfig.ready)."""

from __future__ import annotations

from typing import Any

from apps.billing import services


def signup_credit_of_created_tenant(sender: Any, *, tenant: Any, actor: Any, **kwargs: Any) -> None:
    """Every new tenant starts with settings.BILLING_SIGNUP_CREDIT, none when 0
    (apps.tenants.signals.tenant_created)."""
    services.signup_credit_grant(tenant=tenant, actor=actor)
