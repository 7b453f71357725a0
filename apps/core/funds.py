"""The port through which apps below billing ask "may this tenant spend?" and hear "its funds changed".

Billing sits above quotas, storage and instances in the layer order, so those apps cannot import it. Billing
registers the two questions here at start-up (apps/billing/apps.py), and sends `funds_changed` once a change
that can give a tenant its funds back has committed (a credit grant, a billing mode or budget change):

- `require_funds(tenant=..., price_per_hour=..., instance_id=...)` raises PaymentRequired (402
  insufficient_funds) when the tenant may not start something new that costs `price_per_hour` (0: one-off or
  per-use charges): the wallet must carry its burn rate with it for BILLING_LAUNCH_RUNWAY_MINUTES; an empty
  wallet, a used-up hard budget or a past-due invoice refuse anything. `instance_id`: the instance being
  started or restarted (its own burn is then not counted twice), None for anything new;
- `funds_exhausted(tenant=...)` answers why the tenant's money has run out (its prepaid balance or postpaid
  credit is used up, or its hard monthly budget), or None; resources that keep costing money are cut off
  while it is not None.

Nothing registered is a configuration error, never free service: both questions raise ImproperlyConfigured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# Sent (after commit) with `tenant_id` when a tenant may have got its funds back.
funds_changed = Signal()


@dataclass(frozen=True)
class _Ports:
    require_funds: Callable[..., None]
    funds_exhausted: Callable[..., str | None]


_registered: _Ports | None = None


def register(*, require_funds: Callable[..., None], funds_exhausted: Callable[..., str | None]) -> None:
    global _registered
    _registered = _Ports(require_funds=require_funds, funds_exhausted=funds_exhausted)


def _ports() -> _Ports:
    if _registered is None:
        raise ImproperlyConfigured("No funds check is registered (apps.billing registers it in ready()).")
    return _registered


def require_funds(*, tenant: Any, price_per_hour: Decimal = Decimal(0), instance_id: Any = None) -> None:
    _ports().require_funds(tenant=tenant, price_per_hour=price_per_hour, instance_id=instance_id)


def funds_exhausted(*, tenant: Any) -> str | None:
    return _ports().funds_exhausted(tenant=tenant)
