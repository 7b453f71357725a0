"""The usage ledger (source of truth for every bill), versioned prices and the wallet's credits.

Money is Decimal: prices per hour with 4 places, amounts with 6 (micro-units); rounding to cents happens
once per invoice line (docs/billing.md).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Lower, Upper
from django.db.models.lookups import GreaterThan
from django.utils import timezone

AMOUNT_PLACES = Decimal("0.000001")

# A ledger row created more than this after its period ended is "late" for the partial index that finds rows
# arriving after their month was closed (invoices/aggregation.LATE_ROWS, whose SQL spells the same interval:
# the planner uses a partial index only for a query that repeats its condition).
LATE_ROW_LAG = timedelta(hours=1)


class PriceVersion(models.Model):
    """The price of an instance type from `effective_from` until the next version."""

    instance_type = models.ForeignKey("catalog.InstanceType", on_delete=models.PROTECT, related_name="prices")
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=4)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["instance_type", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance_type", "effective_from"], name="price_version_unique_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instance_type_id}@{self.effective_from:%Y-%m-%dT%H:%M}={self.price_per_hour}"


class LedgerKind(models.TextChoices):
    USAGE = "usage", "Usage"
    REVERSAL = "reversal", "Reversal of an earlier row"
    CORRECTION = "correction", "Corrected usage"


class UsageRecord(models.Model):
    """Usage of one resource on one meter during `period`, rated at the price in force then.

    Append-only: the id is deterministic (resource, meter, start of the period), so writing the same usage
    twice is a no-op, and an exclusion constraint keeps usage rows of one resource and meter from
    overlapping. A mistake is undone by a reversing row, never by an update or delete (a trigger refuses
    both).
    """

    id = models.CharField(primary_key=True, max_length=200)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=32)  # instance, volume, bucket
    resource_id = models.CharField(max_length=64)
    meter = models.CharField(max_length=64)  # e.g. instance_seconds:gpu-h100x1
    period = DateTimeRangeField()
    quantity_seconds = models.BigIntegerField()
    unit_price_per_hour = models.DecimalField(max_digits=12, decimal_places=4)
    amount = models.DecimalField(max_digits=20, decimal_places=6)
    kind = models.CharField(max_length=16, choices=LedgerKind.choices, default=LedgerKind.USAGE)
    reverses = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # The resource's tags when the row was metered (docs/billing.md "Tags"): usage grouped by tag reads the
    # ledger alone, and a tag changed later does not rewrite history.
    tags = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant", "period"]
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            # The wallet read after a snapshot: the tenant's rows that ended after its cutoff.
            models.Index(F("tenant"), Upper("period"), name="usage_tenant_period_end_idx"),
            # Where a resource's usage on a meter ends: metering continues from there (metering.py), one
            # index probe however long the resource has run.
            models.Index(
                F("resource_id"), F("meter"), Upper("period").desc(), name="usage_resource_meter_end_idx"
            ),
            # A month's rows (close, exports, usage reports): a range scan on the start of the period, so
            # a close reads its month only, however long the history before it.
            models.Index(Lower("period"), F("tenant"), name="usage_period_start_idx"),
            # The same month read by the close and the bare scans of a whole month: rows are written in time
            # order, so a block range summary finds the month's pages and the scan reads those alone, as a
            # sequential read, however many months the table holds (a B-tree range of a month's rows
            # loses to a scan of the whole table once the history is long; docs/benchmarks.md).
            BrinIndex(Lower("period"), name="usage_period_start_brin", pages_per_range=32),
            # Rows created long after their period ended (an outage, a late watch event): the close's scan
            # for rows that arrived after their month was closed reads these and the last day before the
            # month (LATE_ROWS), not the whole month again. Tiny: on-time rows are not in it.
            models.Index(
                F("tenant"),
                F("created_at"),
                name="usage_late_rows_idx",
                condition=Q(
                    GreaterThan(
                        ExpressionWrapper(F("created_at") - Upper("period"), output_field=DurationField()),
                        LATE_ROW_LAG,
                    )
                ),
            ),
        ]
        constraints = [
            ExclusionConstraint(
                name="usage_no_overlap_per_resource_meter",
                expressions=[
                    ("resource_id", RangeOperators.EQUAL),
                    ("meter", RangeOperators.EQUAL),
                    ("period", RangeOperators.OVERLAPS),
                ],
                condition=Q(kind="usage"),
            ),
            models.CheckConstraint(
                condition=~Q(kind="usage") | Q(quantity_seconds__gte=0), name="usage_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return self.id


class CreditKind(models.TextChoices):
    PAID = "paid", "Paid top-up"
    PROMOTIONAL = "promotional", "Promotional grant"


class CreditGrant(models.Model):
    """Prepaid money in a tenant's wallet. Paid top-ups come from Stripe Checkout; promotional grants from
    staff, usually with an expiry."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="credit_grants")
    kind = models.CharField(max_length=16, choices=CreditKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=300, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # For paid top-ups: the Checkout Session, so a webhook delivered twice credits once.
    external_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="credit_positive")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.kind}:{self.amount}"


class ReversalCause(models.TextChoices):
    REFUND = "refund", "Refund"
    DISPUTE = "dispute", "Dispute (chargeback)"


class CreditReversal(models.Model):
    """Paid credit taken back out of the wallet (amount > 0: a refund, a dispute's withdrawal) or given back
    to it (amount < 0: a dispute won, a refund that failed), against the grant it reverses.

    Append-only (a trigger refuses UPDATE and DELETE), like the ledger. The movements of one source (a Stripe
    refund or dispute id) are numbered; they add up to what that source withdraws now, so reprocessing an
    event, or its events arriving in any order, moves nothing twice (apps/billing/reversals.py). The wallet
    draws them down with the grants (apps/billing/wallet.py), so a grant never has to go negative.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="reversals")
    cause = models.CharField(max_length=16, choices=ReversalCause.choices)
    source_id = models.CharField(max_length=255)  # re_... (refund) or dp_... (dispute)
    sequence = models.PositiveIntegerField()  # 1, 2, ... per source
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    stripe_event_id = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "sequence"]
        indexes = [models.Index(fields=["tenant", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="credit_reversal_nonzero"),
            models.UniqueConstraint(fields=["source_id", "sequence"], name="credit_reversal_once_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.cause}:{self.source_id}#{self.sequence}:{self.amount}"


class BillingMode(models.TextChoices):
    PREPAID = "prepaid", "Prepaid (credits)"
    POSTPAID = "postpaid", "Postpaid (invoice in arrears)"


class BillingAccount(models.Model):
    """How a tenant pays (a staff switch) and the monthly budget the tenant sets itself.

    Prepaid tenants may not run below a zero balance; postpaid tenants may, down to minus `credit_limit`.
    A hard budget refuses launches and stops instances once month-to-date spend reaches it; a soft one only
    alerts.
    """

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="billing_account")
    mode = models.CharField(max_length=16, choices=BillingMode.choices, default=BillingMode.PREPAID)
    credit_limit = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    monthly_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    budget_hard = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(credit_limit__gte=0), name="billing_credit_limit_nonnegative"),
            models.CheckConstraint(
                condition=Q(monthly_budget__isnull=True) | Q(monthly_budget__gt=0),
                name="billing_budget_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.mode}"


class BudgetAlert(models.Model):
    """One alert per tenant, month and threshold: the unique row is what makes each alert fire once."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()  # the first day of the month (UTC)
    threshold = models.PositiveSmallIntegerField()  # percent: 50, 80, 100
    spend = models.DecimalField(max_digits=20, decimal_places=6)
    budget = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["month", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month", "threshold"], name="budget_alert_once")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.month:%Y-%m}:{self.threshold}%"


class WalletSnapshot(models.Model):
    """The tenant's wallet draw-down at an event-time cutoff, so the wallet read at admission replays only
    what came after it (apps/billing/snapshots.py, docs/billing.md "Wallet snapshots").

    It covers exactly the ledger rows whose period ended at or before `cutoff` and the grants and credit
    reversals made by then. Every row created before `settled_before` (its computation's start less
    BILLING_SNAPSHOT_MARGIN_SECONDS) was committed when it was computed; of the rows created since, it counts
    the ones it holds (`recent_rows`, `recent_reversals`), so a read that finds more knows the snapshot
    missed a late row and falls back to the full sum. A cache, rewritten by the refresh task; never edited.
    """

    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.CASCADE, primary_key=True, related_name="wallet_snapshot"
    )
    cutoff = models.DateTimeField()
    computed_at = models.DateTimeField()
    settled_before = models.DateTimeField()
    # When the chain of snapshots this one carries on from last started from the beginning (a rebuild bounds
    # how long a row committed later than the margin allows can stay missed: BILLING_SNAPSHOT_REBUILD_HOURS).
    rebuilt_at = models.DateTimeField()
    # apps.billing.snapshots.state_to_json(wallet.State): per-grant remainders, debt and the totals.
    state = models.JSONField()
    # Ledger usage in the UTC month of `cutoff` (rows starting in it and ending by the cutoff): budgets.
    month_spend = models.DecimalField(max_digits=20, decimal_places=6)
    recent_rows = models.PositiveIntegerField(default=0)
    recent_reversals = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.cutoff:%Y-%m-%dT%H:%M:%S}"


class TagBudget(models.Model):
    """A monthly budget for the usage carrying one tag (`key`=`value`) in a tenant: alerts at 50, 80 and 100
    percent of the month-to-date spend of that tag, like the tenant's own budget, never a refusal
    (apps/billing/limits.py; docs/billing.md "Tags")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=63)  # apps/core/tags.py: lower case
    value = models.CharField(max_length=255)
    monthly_amount = models.DecimalField(max_digits=14, decimal_places=2)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key", "value"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key", "value"], name="tag_budget_once_per_tag"),
            models.CheckConstraint(condition=Q(monthly_amount__gt=0), name="tag_budget_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.key}={self.value}:{self.monthly_amount}"


class TagBudgetAlert(models.Model):
    """One alert per tag budget, month and threshold: the unique row makes each fire once, as BudgetAlert
    does for the tenant's budget."""

    tag_budget = models.ForeignKey(TagBudget, on_delete=models.CASCADE, related_name="alerts")
    month = models.DateField()  # the first day of the month (UTC)
    threshold = models.PositiveSmallIntegerField()  # percent: 50, 80, 100
    spend = models.DecimalField(max_digits=20, decimal_places=6)
    budget = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["month", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["tag_budget", "month", "threshold"], name="tag_budget_alert_once")
        ]

    def __str__(self) -> str:
        return f"{self.tag_budget_id}:{self.month:%Y-%m}:{self.threshold}%"
