"""Helpers for the wallet, limits and billing API tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.billing.models import CreditGrant, UsageRecord
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Observation
from apps.tenants.models import Tenant

_ids = itertools.count()


def minute_aligned(moment: datetime | None = None) -> datetime:
    return (moment or timezone.now()).replace(second=0, microsecond=0)


def grant(tenant: Tenant, amount: str, *, at: datetime | None = None, **extra: Any) -> CreditGrant:
    return CreditGrant.objects.create(
        tenant=tenant,
        kind=extra.pop("kind", "promotional"),
        amount=Decimal(amount),
        created_at=at or timezone.now() - timedelta(days=1),
        **extra,
    )


def usage(
    tenant: Tenant,
    amount: str,
    *,
    end: datetime,
    seconds: int = 60,
    meter: str = "instance_seconds:x",
    created_at: datetime | None = None,
) -> UsageRecord:
    """A ledger row of `amount` ending at `end` (on a resource of its own, so rows never overlap), written
    now unless `created_at` says when metering wrote it."""
    n = next(_ids)
    return UsageRecord.objects.create(
        id=f"test:{n}",
        tenant=tenant,
        resource_type="instance",
        resource_id=f"test-{n}",
        meter=meter,
        period=DateTimeTZRange(end - timedelta(seconds=seconds), end, "[)"),
        quantity_seconds=seconds,
        unit_price_per_hour=Decimal("1.0000"),
        amount=Decimal(amount),
        **({"created_at": created_at} if created_at is not None else {}),
    )


def launch(actor: Any, **req: Any) -> Instance:
    body = {"instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch", **req}
    return services.instance_launch(actor=actor.user, tenant=actor.tenant, req=services.LaunchRequest(**body))


def run_since(instance: Instance, start: datetime) -> Instance:
    """Make the instance running (the operator reports pod Ready, its container started), as if that
    happened at `start`: billed from then."""
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY)
    events = InstanceEvent.objects.filter(instance=instance)
    # The launch and provisioning happened just before (else the ledger would see them after `start`).
    events.filter(billable=False).update(created_at=start - timedelta(seconds=1))
    events.filter(billable=True).update(created_at=start)
    Instance.objects.filter(pk=instance.pk).update(running_since=start, billing_since=start)
    instance.refresh_from_db()
    assert instance.state == "running"
    return instance
