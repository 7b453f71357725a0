"""Wallet snapshots: the draw-down state at a cutoff, so the wallet read at admission sums only the ledger
rows that came after it (docs/billing.md "Wallet snapshots").

The refresh task moves each tenant's cutoff to now - BILLING_SNAPSHOT_LAG_SECONDS, carrying on from the
previous snapshot when that one is still exact (so a refresh costs the rows since the last one, not the
tenant's history), and from the beginning when it missed a late row. Reads never write: admission stays
read-only, and a snapshot that turns out to be stale is only passed over until the next refresh.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.billing import wallet
from apps.billing.models import UsageRecord, WalletSnapshot
from apps.billing.selectors import ledger_inputs, month_start
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)


def state_to_json(state: wallet.State) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "at": state.at.isoformat(),
        "remaining": {key: str(amount) for key, amount in state.remaining.items()},
        "active": [
            [g.key, str(g.amount), g.granted_at.isoformat(), moment(g.expires_at)] for g in state.active
        ],
        "debt": str(state.debt),
        "granted": str(state.granted),
        "used": str(state.used),
        "expired_unused": str(state.expired_unused),
        "reversed": str(state.reversed),
    }


def state_from_json(data: dict[str, Any]) -> wallet.State:
    def moment(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value is not None else None

    return wallet.State(
        at=datetime.fromisoformat(data["at"]),
        remaining={key: Decimal(amount) for key, amount in data["remaining"].items()},
        active=tuple(
            wallet.Grant(key, Decimal(amount), datetime.fromisoformat(granted_at), moment(expires_at))
            for key, amount, granted_at, expires_at in data["active"]
        ),
        debt=Decimal(data["debt"]),
        granted=Decimal(data["granted"]),
        used=Decimal(data["used"]),
        expired_unused=Decimal(data["expired_unused"]),
        reversed=Decimal(data["reversed"]),
    )


def snapshot_due() -> list[Any]:
    """Tenants whose ledger has rows created since their snapshot was settled (or that have rows and no
    snapshot): one index probe per tenant on (tenant, created_at)."""
    rows = UsageRecord.objects.filter(tenant_id=OuterRef("pk"))
    return list(
        Tenant.objects.filter(
            (Q(wallet_snapshot__isnull=True) & Exists(rows))
            | Exists(rows.filter(created_at__gt=OuterRef("wallet_snapshot__settled_before")))
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def wallet_snapshots_refresh(*, now: datetime | None = None, tenant_ids: list[Any] | None = None) -> int:
    """Move the wallet snapshot of each tenant with new ledger rows (or of `tenant_ids`) to the cutoff now -
    BILLING_SNAPSHOT_LAG_SECONDS. Returns how many snapshots were written. A cache, not an audited change:
    it never alters what a wallet shows, only how much of the ledger a read has to sum."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.BILLING_SNAPSHOT_LAG_SECONDS)
    # Rows created before this were committed by now (no transaction writing the ledger, grants or
    # reversals stays open longer than the margin); later ones are counted, so a read can tell.
    settled_before = now - timedelta(seconds=settings.BILLING_SNAPSHOT_MARGIN_SECONDS)
    ids = tenant_ids if tenant_ids is not None else snapshot_due()
    written = 0
    chunk = max(1, int(settings.BILLING_SNAPSHOT_CHUNK))
    for index in range(0, len(ids), chunk):
        written += _refresh(ids[index : index + chunk], cutoff=cutoff, settled_before=settled_before, now=now)
    return written


@transaction.atomic
def _refresh(tenant_ids: list[Any], *, cutoff: datetime, settled_before: datetime, now: datetime) -> int:
    rebuild_before = now - timedelta(hours=settings.BILLING_SNAPSHOT_REBUILD_HOURS)
    found = {s.tenant_id: s for s in WalletSnapshot.objects.filter(tenant_id__in=tenant_ids)}
    # A snapshot already at the cutoff stays; the others move on from their snapshot, or from the beginning
    # when there is none before the cutoff, it is due for a rebuild, or it missed a late row.
    moving = [t for t in tenant_ids if t not in found or found[t].cutoff != cutoff]
    bases = {
        t: found[t]
        for t in moving
        if t in found and found[t].cutoff < cutoff and found[t].rebuilt_at > rebuild_before
    }
    month = month_start(cutoff)
    inputs, stale = ledger_inputs(
        moving,
        now=cutoff,
        mtd_from=month,
        snapshots=bases,
        until=cutoff,
        settled_before=settled_before,
    )
    if stale:
        logger.info(
            "billing: %d wallet snapshot(s) missed late rows; recomputed from the beginning", len(stale)
        )
        again, _ = ledger_inputs(
            sorted(stale, key=str),
            now=cutoff,
            mtd_from=month,
            snapshots={},
            until=cutoff,
            settled_before=settled_before,
        )
        inputs.update(again)
    for tenant_id in moving:
        got = inputs[tenant_id]
        state = wallet.replay(got.grants, got.usage, now=cutoff, reversals=got.reversals, start=got.start)
        WalletSnapshot.objects.update_or_create(
            tenant_id=tenant_id,
            defaults={
                "cutoff": cutoff,
                "computed_at": now,
                "settled_before": settled_before,
                "state": state_to_json(state),
                "month_spend": got.month_spend,
                "recent_rows": got.recent_rows,
                "recent_reversals": got.recent_reversals,
                "rebuilt_at": bases[tenant_id].rebuilt_at if got.start is not None else now,
            },
        )
    return len(moving)
