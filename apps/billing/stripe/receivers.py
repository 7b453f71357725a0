"""What the Stripe integration does when the rest of billing changes (connected in StripeBillingConfig.ready):
a finalized invoice is collected (collection.py), a new price version gets its Stripe Price."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.billing.models import PriceVersion
from apps.billing.stripe import gateway
from apps.billing.stripe.meter_prices import INSTANCE_PREFIX


def price_version_saved(sender: Any, *, instance: PriceVersion, **kwargs: Any) -> None:
    """post_save of PriceVersion (apps.billing.services.price_change): once it commits, make the Stripe
    Meter and Price usage at the new price will be sent to. Usage before it keeps its own rate."""
    from apps.billing.stripe import tasks  # tasks import the modules this one is imported with

    if not gateway.is_configured():
        return
    meter_key = f"{INSTANCE_PREFIX}{instance.instance_type.slug}"
    price = str(instance.price_per_hour)
    transaction.on_commit(lambda: tasks.ensure_stripe_price.delay(meter_key, price))
