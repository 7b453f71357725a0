"""Reads of the wallet and the ledger, always for one tenant, in a constant number of queries."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DecimalField,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from apps.billing import cluster_usage, intervals, metering, volume_metering, wallet
from apps.billing.models import (
    BillingAccount,
    BillingMode,
    CreditGrant,
    CreditReversal,
    UsageRecord,
)
from apps.core.tags import UNTAGGED
from apps.instances.models import Instance
from apps.storage.models import Volume, VolumeEvent, VolumeState
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

ZERO = Decimal("0")
HOUR = Decimal(3600)


def _upper(field: str) -> Func:
    return Func(F(field), function="upper", output_field=DateTimeField())


def _lower(field: str) -> Func:
    return Func(F(field), function="lower", output_field=DateTimeField())


def month_start(now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class OpenUsage:
    """Usage not yet in the ledger: from the end of a resource's last row (or from when its billing began)
    until now. For a billed instance (its pod holds GPUs, Ready or not), its billed time; for a live
    volume, its storage time (a volume is billed while its instance is stopped, or with none)."""

    resource_id: Any
    start: datetime
    pieces: tuple[tuple[datetime, Decimal], ...]  # (start, amount) of each piece, cut like the ledger
    price_per_hour: Decimal

    @property
    def amount(self) -> Decimal:
        return sum((amount for _, amount in self.pieces), ZERO)

    def amount_since(self, moment: datetime) -> Decimal:
        return sum((amount for start, amount in self.pieces if start >= moment), ZERO)


def _open_usage(tenant_ids: Collection[Any], now: datetime) -> dict[Any, list[OpenUsage]]:
    """Open usage per tenant id, in the same few queries however many tenants are asked for: each billed
    instance from where its ledger ends (or its billing began) until now, cut and rated as the ledger will
    be (the last piece up to now)."""
    running = list(
        Instance.objects.filter(tenant_id__in=tenant_ids, billing_since__isnull=False).values_list(
            "pk", "tenant_id", "instance_type_id", "instance_type__slug", "price_per_hour", "billing_since"
        )
    )
    if not running:
        return {}
    meters = {pk: f"{metering.INSTANCE_METER_PREFIX}{slug}" for pk, _, _, slug, _, _ in running}
    last_end = _ledger_ends(meters)
    versions = metering.price_versions({type_id for _, _, type_id, _, _, _ in running})
    step = metering.checkpoint()
    now = intervals.floor_second(now)
    result: dict[Any, list[OpenUsage]] = {}
    for pk, tenant_id, type_id, _, launch_price, billing_since in running:
        # billing_since is the created_at of the event that started billing: where the ledger starts too.
        start = intervals.floor_second(billing_since or now)
        end = last_end.get(str(pk))
        if end is not None and end > start:
            start = end
        prices = metering.with_launch_price(versions.get(type_id, []), launch_price)
        current = intervals.price_at(prices, now)
        cut = intervals.pieces(
            [intervals.Interval(start, now)] if start < now else [], checkpoint=step, prices=prices, now=now
        )
        amounts = tuple((p.start, metering.amount_for(p.seconds, p.price_per_hour)) for p in cut)
        result.setdefault(tenant_id, []).append(OpenUsage(pk, start, amounts, current))
    return result


def _ledger_ends(meters: dict[Any, str]) -> dict[str, datetime]:
    """Where the ledger's usage rows of each resource (id -> its meter) end, by resource id as text: open
    usage starts there. One query, one index probe per resource (metering.ledger_ends)."""
    ends = metering.ledger_ends([(str(pk), meter) for pk, meter in meters.items()])
    return {resource_id: end for (resource_id, _), end in ends.items()}


def _open_volume_usage(tenant_ids: Collection[Any], now: datetime) -> dict[Any, list[OpenUsage]]:
    """Open storage time per tenant id: each volume still billed (not deleting, deleted or failed; see
    volume_metering.py), from the end of its last ledger row or its creation until now, at size x its
    frozen price per GiB-hour, cut at checkpoints, month starts and resizes like the ledger. Three queries
    at most."""
    live = list(
        Volume.objects.filter(tenant_id__in=tenant_ids)
        .exclude(state__in=(VolumeState.DELETING, VolumeState.DELETED, VolumeState.FAILED))
        .values_list("pk", "tenant_id", "price_per_gib_hour", "storage_class")
    )
    if not live:
        return {}
    ids = [pk for pk, _, _, _ in live]
    last_end = _ledger_ends(
        {pk: volume_metering.meter_for(storage_class) for pk, _, _, storage_class in live}
    )
    sizes: dict[Any, list[tuple[datetime, int, str]]] = {}
    for volume_id, at, size, name in (
        VolumeEvent.objects.filter(volume_id__in=ids, name__in=volume_metering.SIZE_EVENTS)
        .order_by("created_at", "id")
        .values_list("volume_id", "created_at", "size_gib", "name")
    ):
        sizes.setdefault(volume_id, []).append((intervals.floor_second(at), size, name))

    now = intervals.floor_second(now)
    step = metering.checkpoint()
    result: dict[Any, list[OpenUsage]] = {}
    for pk, tenant_id, price_per_gib_hour, _ in live:
        events = sizes.get(pk, [])
        created = next((at for at, _, name in events if name == "created"), None)
        if created is None:
            continue  # not billed (as metering sees it)
        prices = [(at, price_per_gib_hour * size) for at, size, _ in events]
        start = created
        end = last_end.get(str(pk))
        if end is not None and end > start:
            start = end
        cut = intervals.pieces(
            [intervals.Interval(start, now)] if start < now else [], checkpoint=step, prices=prices, now=now
        )
        amounts = tuple((p.start, metering.amount_for(p.seconds, p.price_per_hour)) for p in cut)
        current = intervals.price_at(prices, now)
        result.setdefault(tenant_id, []).append(OpenUsage(pk, start, amounts, current))
    return result


@dataclass(frozen=True)
class Wallet:
    balance: Decimal
    credits: Decimal
    usage_total: Decimal
    burn_rate_per_hour: Decimal
    runway_seconds: int | None
    month_to_date_spend: Decimal
    mode: str
    credit_limit: Decimal
    monthly_budget: Decimal | None
    budget_hard: bool
    remaining: dict[str, Decimal]
    as_of: datetime
    # The instances whose price is in burn_rate_per_hour (by id as text): an admission check adds an
    # instance's price only when it is not already counted.
    burning_instances: frozenset[str] = frozenset()

    @property
    def headroom(self) -> Decimal:
        """How much more may be spent before the balance limit: the balance (prepaid), or the balance plus
        the credit limit (postpaid)."""
        return self.balance + (self.credit_limit if self.mode == BillingMode.POSTPAID else ZERO)

    @property
    def budget_left(self) -> Decimal | None:
        if self.monthly_budget is None or not self.budget_hard:
            return None
        return self.monthly_budget - self.month_to_date_spend

    def seconds_until(self, amount: Decimal) -> int | None:
        if self.burn_rate_per_hour <= 0:
            return None
        return max(0, int(amount * HOUR / self.burn_rate_per_hour))


def wallet_of(tenant: Tenant, now: datetime | None = None) -> Wallet:
    """The wallet at `now`: credits drawn down by the ledger plus the usage not yet in it (running instances'
    time, live volumes' storage time)."""
    return wallets_of([tenant], now)[tenant.pk]


def _bucket_condition(lower: datetime | None, upper: datetime | None, exact: bool) -> Q:
    if exact:
        return Q(period__endswith=lower)
    condition = Q()
    if lower is not None:
        condition &= Q(period__endswith__gt=lower)
    if upper is not None:
        condition &= Q(period__endswith__lt=upper)
    return condition


@dataclass
class LedgerInputs:
    """What the draw-down of one tenant needs from the database: the grants, ledger usage (summed per
    bucket) and credit reversals to replay, from `start` (a snapshot's state) or from the beginning."""

    grants: list[wallet.Grant]
    usage: list[wallet.Usage]
    reversals: list[wallet.Reversal]
    start: wallet.State | None
    month_spend: Decimal  # ledger usage that started at or after mtd_from
    recent_rows: int = 0  # rows ending by `until` created after `settled_before` (a refresh's count)
    recent_reversals: int = 0


def ledger_inputs(
    tenant_ids: Collection[Any],
    *,
    now: datetime,
    mtd_from: datetime,
    snapshots: dict[Any, Any],
    until: datetime | None = None,
    settled_before: datetime | None = None,
) -> tuple[dict[Any, LedgerInputs], set[Any]]:
    """Three queries for any number of tenants: their grants, credit reversals and ledger sums. A tenant
    with a snapshot (WalletSnapshot) gets only what came after its cutoff; one whose snapshot turns out to
    have missed something (a late row, a grant or reversal dated by its cutoff but written after it) is
    returned in the second set instead, for the caller to read again without it.

    `until` (a snapshot refresh) leaves out everything after it; `settled_before` then counts the rows and
    reversals created after it that are included (WalletSnapshot.recent_rows)."""
    starts = {t: snapshot_state(s) for t, s in snapshots.items()}
    full = [t for t in tenant_ids if t not in snapshots]

    def since(snapshot: Any) -> datetime:
        # What a snapshot may lack: anything dated after its cutoff, or created after it was settled.
        return min(snapshot.cutoff, snapshot.settled_before)

    def recent(field: str, when: datetime | None) -> Q:
        return Q(**{f"{field}__gt": when}) if when is not None else Q(pk__in=[])

    scope = Q(tenant_id__in=full)
    for t, snap in snapshots.items():
        scope |= Q(tenant_id=t, created_at__gt=since(snap))
    bound = Q(created_at__lte=until) if until is not None else Q()
    grants: dict[Any, list[wallet.Grant]] = {t: [] for t in tenant_ids}
    for tenant_id, pk, amount, created_at, expires_at in (
        CreditGrant.objects.filter(scope & bound)
        .order_by("created_at", "pk")
        .values_list("tenant_id", "pk", "amount", "created_at", "expires_at")
    ):
        grants[tenant_id].append(wallet.Grant(str(pk), amount, created_at, expires_at))
    reversals: dict[Any, list[wallet.Reversal]] = {t: [] for t in tenant_ids}
    reversal_recent: dict[Any, int] = {t: 0 for t in tenant_ids}
    for tenant_id, grant_id, amount, created_at in (
        CreditReversal.objects.filter(scope & bound)
        .order_by("created_at", "sequence", "pk")
        .values_list("tenant_id", "grant_id", "amount", "created_at")
    ):
        reversals[tenant_id].append(wallet.Reversal(created_at, amount, str(grant_id)))
        if settled_before is not None and created_at > settled_before:
            reversal_recent[tenant_id] += 1

    stale: set[Any] = set()
    for t, snap in snapshots.items():
        known = starts[t].remaining
        if any(g.granted_at <= snap.cutoff and g.key not in known for g in grants[t]) or (
            sum(r.at <= snap.cutoff for r in reversals[t]) > snap.recent_reversals
        ):
            stale.add(t)

    # Each ledger row falls in exactly one (tenant, bucket); the buckets are numbered across tenants so one
    # grouped query sums them all. A snapshot's tenant also gets a "late" bucket: rows it should hold,
    # created after it was settled, counted against the ones it does hold.
    horizon = until or now
    parts: dict[Any, list[tuple[int, datetime]]] = {}
    late: dict[int, Any] = {}
    whens: list[When] = []
    rows = Q(tenant_id__in=full)
    for tenant_id in tenant_ids:
        snap = snapshots.get(tenant_id)
        start = starts.get(tenant_id)
        carried = list(start.active) if start is not None else []
        boundaries = (
            [g.granted_at for g in grants[tenant_id]]
            + [
                g.expires_at
                for g in [*carried, *grants[tenant_id]]
                if g.expires_at is not None and g.expires_at <= horizon
            ]
            + [r.at for r in reversals[tenant_id]]
            + ([snap.cutoff] if snap is not None else [])
            + ([until] if until is not None else [])
        )
        for lower, upper, exact, at in wallet.buckets(boundaries) or [(None, None, False, now)]:
            if snap is not None and (
                lower is None or lower < snap.cutoff or (exact and lower == snap.cutoff)
            ):
                continue  # held by the snapshot
            if until is not None and lower is not None and (lower > until or (lower == until and not exact)):
                continue  # after the refresh's cutoff
            number = len(whens)
            whens.append(When(Q(tenant_id=tenant_id) & _bucket_condition(lower, upper, exact), then=number))
            parts.setdefault(tenant_id, []).append((number, at))
        if snap is not None:
            number = len(whens)
            missed = Q(
                tenant_id=tenant_id, period__endswith__lte=snap.cutoff, created_at__gt=snap.settled_before
            )
            whens.append(When(missed, then=number))
            late[number] = tenant_id
            rows |= Q(tenant_id=tenant_id) & (
                Q(period__endswith__gt=snap.cutoff) | Q(created_at__gt=snap.settled_before)
            )
    if until is not None:
        rows &= Q(period__endswith__lte=until)
    sums = {
        row["bucket"]: row
        for row in UsageRecord.objects.filter(rows)
        .annotate(bucket=Case(*whens, default=None, output_field=IntegerField()))
        .values("bucket")
        .annotate(
            total=Sum("amount"),
            mtd=Sum("amount", filter=Q(period__startswith__gte=mtd_from)),
            count=Count("pk"),
            recent=Count("pk", filter=recent("created_at", settled_before)),
        )
        .order_by()
    }
    recent_rows: dict[Any, int] = {t: 0 for t in tenant_ids}
    for number, tenant_id in late.items():
        if number in sums and sums[number]["count"] > snapshots[tenant_id].recent_rows:
            stale.add(tenant_id)
        recent_rows[tenant_id] += sums[number]["recent"] if number in sums else 0

    result: dict[Any, LedgerInputs] = {}
    for tenant_id in tenant_ids:
        if tenant_id in stale:
            continue
        found = [(at, sums[number]) for number, at in parts.get(tenant_id, []) if number in sums]
        snap = snapshots.get(tenant_id)
        # The snapshot's month is the month of its cutoff; a month that began since owes it nothing.
        carried_spend = snap.month_spend if snap is not None and snap.cutoff >= mtd_from else ZERO
        result[tenant_id] = LedgerInputs(
            grants=grants[tenant_id],
            usage=[wallet.Usage(at, row["total"]) for at, row in found if row["total"]],
            reversals=reversals[tenant_id],
            start=starts.get(tenant_id),
            month_spend=carried_spend + sum((row["mtd"] or ZERO for _, row in found), ZERO),
            recent_rows=recent_rows[tenant_id] + sum(row["recent"] for _, row in found),
            recent_reversals=reversal_recent[tenant_id],
        )
    return result, stale


def snapshot_state(snapshot: Any) -> wallet.State:
    from apps.billing.snapshots import state_from_json

    return state_from_json(snapshot.state)


def _accounts_and_snapshots(tenant_ids: Collection[Any]) -> tuple[dict[Any, BillingAccount], dict[Any, Any]]:
    """The billing accounts and wallet snapshots of the tenants, in one query (both are optional)."""
    accounts: dict[Any, BillingAccount] = {}
    snapshots: dict[Any, Any] = {}
    for tenant in Tenant.objects.filter(pk__in=tenant_ids).select_related(
        "billing_account", "wallet_snapshot"
    ):
        account = getattr(tenant, "billing_account", None)
        if account is not None:
            accounts[tenant.pk] = account
        snapshot = getattr(tenant, "wallet_snapshot", None)
        if snapshot is not None:
            snapshots[tenant.pk] = snapshot
    return accounts, snapshots


def wallets_of(tenants: Iterable[Tenant], now: datetime | None = None) -> dict[Any, Wallet]:
    """The wallets of many tenants at `now`, by tenant id, in the same few queries as one (staff lists).

    A tenant's wallet snapshot (WalletSnapshot, when its cutoff is before `now`) stands for the ledger up to
    its cutoff, so only the rows after it are summed; a snapshot that missed a row is passed over (three
    more queries) until the refresh task rewrites it."""
    now = now or timezone.now()
    tenant_ids = [t.pk for t in tenants]
    if not tenant_ids:
        return {}
    accounts, snapshots = _accounts_and_snapshots(tenant_ids)
    mtd_from = month_start(now)
    usable = {t: s for t, s in snapshots.items() if s.cutoff < now}
    inputs, stale = ledger_inputs(tenant_ids, now=now, mtd_from=mtd_from, snapshots=usable)
    if stale:
        logger.debug("billing: %d wallet snapshot(s) missed late rows; summing the whole ledger", len(stale))
        inputs.update(ledger_inputs(sorted(stale, key=str), now=now, mtd_from=mtd_from, snapshots={})[0])
    open_usage = _open_usage(tenant_ids, now)
    burning = {t: frozenset(str(o.resource_id) for o in items) for t, items in open_usage.items()}
    for tenant_id, volumes in _open_volume_usage(tenant_ids, now).items():
        open_usage.setdefault(tenant_id, []).extend(volumes)
    return {
        tenant_id: _wallet(
            account=accounts.get(tenant_id),
            ledger=inputs[tenant_id],
            open_usage=open_usage.get(tenant_id, []),
            now=now,
            mtd_from=mtd_from,
            burning=burning.get(tenant_id, frozenset()),
        )
        for tenant_id in tenant_ids
    }


def reversals_of(
    tenant_ids: Collection[Any], *, until: datetime | None = None
) -> dict[Any, list[wallet.Reversal]]:
    """Credit reversals per tenant id (refunds and chargebacks of paid credit), oldest first."""
    rows = CreditReversal.objects.filter(tenant_id__in=tenant_ids)
    if until is not None:
        rows = rows.filter(created_at__lte=until)
    result: dict[Any, list[wallet.Reversal]] = {}
    for tenant_id, grant_id, amount, created_at in rows.order_by("created_at", "sequence", "pk").values_list(
        "tenant_id", "grant_id", "amount", "created_at"
    ):
        result.setdefault(tenant_id, []).append(wallet.Reversal(created_at, amount, str(grant_id)))
    return result


def _wallet(
    *,
    account: BillingAccount | None,
    ledger: LedgerInputs,
    open_usage: list[OpenUsage],
    now: datetime,
    mtd_from: datetime,
    burning: frozenset[str],
) -> Wallet:
    drawn_usage = list(ledger.usage)
    open_amount = sum((o.amount for o in open_usage), ZERO)
    if open_amount:
        drawn_usage.append(wallet.Usage(now, open_amount))
    drawn = wallet.draw_down(
        ledger.grants, drawn_usage, now=now, reversals=ledger.reversals, start=ledger.start
    )
    # Windows are aligned to the epoch, so no piece crosses the start of a month.
    closed_this_month = ledger.month_spend
    open_this_month = sum((o.amount_since(mtd_from) for o in open_usage), ZERO)
    burn = sum((o.price_per_hour for o in open_usage), ZERO)
    w = Wallet(
        balance=drawn.balance,
        credits=drawn.credits,
        usage_total=drawn.used,
        burn_rate_per_hour=burn,
        runway_seconds=None,
        month_to_date_spend=closed_this_month + open_this_month,
        mode=account.mode if account else BillingMode.PREPAID,
        credit_limit=account.credit_limit if account else ZERO,
        monthly_budget=account.monthly_budget if account else None,
        budget_hard=account.budget_hard if account else False,
        remaining=drawn.remaining,
        as_of=now,
        burning_instances=burning,
    )
    runway = w.seconds_until(max(w.balance, ZERO))
    return Wallet(**{**w.__dict__, "runway_seconds": runway})


def credit_grants_of(*, tenant: Tenant) -> QuerySet[CreditGrant]:
    """The tenant's grants, newest first, each with `reversed`: what refunds and chargebacks took back."""
    return (
        CreditGrant.objects.filter(tenant=tenant)
        .annotate(reversed=Coalesce(Sum("reversals__amount"), Value(ZERO), output_field=DecimalField()))
        .order_by("-created_at", "pk")
    )


GROUPS = ("instance", "instance_type", "day")
# group_by=tag:<key>: one group per value of that tag, and the usage without it in one group of key null.
TAG_GROUP = "tag:"
# The cluster fields of a group that is not a node of a cluster (grouped per type or day, or a single
# instance, or another resource).
NOT_A_NODE: dict[str, Any] = {"cluster": None, "cluster_name": None, "rank": None}


def _ledger_rows(
    tenant: Tenant, start: datetime, end: datetime, tags: Mapping[str, str] | None
) -> QuerySet[UsageRecord]:
    """The tenant's ledger rows whose period starts within [start, end) (a range scan of
    usage_period_start_idx), carrying every one of `tags` (jsonb @>, checked on those rows) when given."""
    rows = UsageRecord.objects.filter(
        tenant=tenant, period__startswith__gte=start, period__startswith__lt=end
    )
    return rows.filter(tags__contains=dict(tags)) if tags else rows


def usage_report(
    *,
    tenant: Tenant,
    start: datetime,
    end: datetime,
    group_by: str,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Ledger usage whose period starts within [start, end), summed per group; rows never cross an hour
    (the metering's checkpoint), so the boundaries are exact to the hour. `tags` keeps the rows carrying all
    of them (as metered: a row has its resource's tags of that moment); group_by `tag:<key>` groups by that
    tag's value (apps/core/tags.py checks the key)."""
    rows = _ledger_rows(tenant, start, end, tags)
    grouped: list[dict[str, Any]]
    if group_by.startswith(TAG_GROUP):
        return _by_tag(rows, group_by.removeprefix(TAG_GROUP))
    if group_by == "day":
        grouped = _plain(
            rows.annotate(key=TruncDate(_lower("period"), tzinfo=UTC))
            .values("key")
            .annotate(quantity_seconds=Sum("quantity_seconds"), amount=Sum("amount"))
            .order_by("key")
        )
        return [
            {"key": row["key"].isoformat(), "name": row["key"].isoformat(), **NOT_A_NODE, **_totals(row)}
            for row in grouped
        ]
    if group_by == "instance_type":
        grouped = _plain(
            rows.values("meter")
            .annotate(quantity_seconds=Sum("quantity_seconds"), amount=Sum("amount"))
            .order_by("meter")
        )
        return [
            {"key": row["meter"].split(":", 1)[-1], "name": row["meter"], **NOT_A_NODE, **_totals(row)}
            for row in grouped
        ]
    grouped = _plain(
        rows.values("resource_type", "resource_id")
        .annotate(quantity_seconds=Sum("quantity_seconds"), amount=Sum("amount"))
        .order_by("resource_type", "resource_id")
    )
    ids = [_uuid_or_none(r["resource_id"]) for r in grouped if r["resource_type"] == "instance"]
    instances = Instance.objects.filter(tenant=tenant, pk__in=[i for i in ids if i is not None])
    # One query for the names and, for nodes of a cluster, the cluster they are grouped under.
    found = {
        pk: (name, cluster_id, cluster_name, rank)
        for pk, name, cluster_id, cluster_name, rank in instances.values_list(
            "pk", "name", "cluster_id", "cluster__name", "rank"
        )
    }
    results = []
    for row in grouped:
        name, cluster_id, cluster_name, rank = (
            found.get(_uuid_or_none(row["resource_id"]), (row["resource_id"], None, None, None))
            if row["resource_type"] == "instance"
            else (row["resource_id"], None, None, None)
        )
        results.append(
            {
                "key": row["resource_id"],
                "name": name,
                "cluster": cluster_id,
                "cluster_name": cluster_name,
                "rank": rank,
                **_totals(row),
            }
        )
    return results


def _by_tag(rows: QuerySet[UsageRecord], key: str) -> list[dict[str, Any]]:
    """One group per value of the tag `key` (by value; "" is a value), then the rows without the tag: key
    null, named "untagged"."""
    grouped = _plain(
        rows.annotate(tag_value=KeyTextTransform(key, "tags"))
        .values("tag_value")
        .annotate(quantity_seconds=Sum("quantity_seconds"), amount=Sum("amount"))
        .order_by(F("tag_value").asc(nulls_last=True))
    )
    return [
        {
            "key": row["tag_value"],
            "name": UNTAGGED if row["tag_value"] is None else row["tag_value"],
            **NOT_A_NODE,
            **_totals(row),
        }
        for row in grouped
    ]


def usage_clusters(
    *,
    tenant: Tenant,
    start: datetime,
    end: datetime,
    by_instance: list[dict[str, Any]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per-cluster subtotals of the ledger usage whose period starts within [start, end) (and carries all of
    `tags`): the exact sums of its nodes' rows (cluster_usage.cluster_subtotals). From `by_instance`
    (usage_report grouped per instance) when given, without a query; otherwise two queries, however many
    rows and clusters."""
    if by_instance is None:
        rows = _ledger_rows(tenant, start, end, tags).filter(
            resource_type="instance",
            resource_id__in=cluster_usage.node_keys(tenant=tenant),
        )
        grouped = _plain(
            rows.values("resource_id")
            .annotate(quantity_seconds=Sum("quantity_seconds"), amount=Sum("amount"))
            .order_by("resource_id")
        )
        nodes = cluster_usage.nodes_by_resource(
            tenant=tenant, resource_ids=[r["resource_id"] for r in grouped]
        )
        by_instance = [
            {
                "key": row["resource_id"],
                "cluster": node.cluster_id,
                "cluster_name": node.cluster_name,
                **_totals(row),
            }
            for row in grouped
            if (node := nodes.get(row["resource_id"])) is not None
        ]
    return cluster_usage.cluster_subtotals(by_instance)


def _plain(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


def _uuid_or_none(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    seconds = int(row["quantity_seconds"] or 0)
    return {
        "quantity_seconds": seconds,
        "quantity_hours": (Decimal(seconds) / HOUR).quantize(Decimal("0.000001")),
        "amount": row["amount"] or ZERO,
    }
