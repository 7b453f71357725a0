"""What we keep about Stripe: one customer per tenant, the meters and prices usage is exported to, the
Checkout Sessions we opened, the meter-event outbox, the collection of each of our invoices and every
webhook event received (once)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class BillingStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due: no new launches"
    SUSPENDED = "suspended", "Suspended for non-payment"


class StripeCustomer(models.Model):
    """The tenant's Stripe Customer and what Stripe told us about its payments."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.PROTECT, related_name="stripe_customer")
    customer_id = models.CharField(max_length=255, unique=True)
    card_on_file = models.BooleanField(default=False)
    billing_status = models.CharField(
        max_length=16, choices=BillingStatus.choices, default=BillingStatus.ACTIVE
    )
    past_due_since = models.DateTimeField(null=True, blank=True)
    subscription_id = models.CharField(max_length=255, blank=True)
    subscription_status = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"


class MeterUnit(models.TextChoices):
    SECOND = "second", "Second (instances)"
    GIB_SECOND = "gib_second", "GiB-second (volumes, object storage)"


class StripeMeter(models.Model):
    """The Billing Meter and metered Price one of our ledger meters is exported to at one price.

    One per (meter key, price per unit-hour): a new price (a PriceVersion of an instance type, another price
    per GiB-hour) gets a meter and a price of its own, so usage after the change is counted under the new
    price and usage before it stays under the old one (meter events cannot name a price; a meter's events
    are billed by every price on it). Rows from before prices were versioned have no price and are no
    longer used."""

    meter_key = models.CharField(max_length=64)
    unit = models.CharField(max_length=16, choices=MeterUnit.choices, default=MeterUnit.SECOND)
    # Per hour of the unit: per hour (instances) or per GiB-hour (storage), as the product prices it.
    price_per_unit_hour = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    # What the Stripe Price charges per unit, in cents (12 places, rounded up: see meter_prices.py).
    unit_amount_decimal = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    event_name = models.CharField(max_length=100, unique=True)
    meter_id = models.CharField(max_length=255)
    price_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter_key", "price_per_unit_hour"],
                condition=models.Q(price_per_unit_hour__isnull=False),
                name="stripe_meter_one_per_price",
            )
        ]

    def __str__(self) -> str:
        return f"{self.meter_key}@{self.price_per_unit_hour} -> {self.meter_id}"


class CheckoutKind(models.TextChoices):
    TOPUP = "topup", "Top-up (mode=payment)"
    CARD_SETUP = "card_setup", "Card set-up (mode=setup)"


class CheckoutSession(models.Model):
    """A Checkout Session we opened: the webhook trusts this record for the tenant and the amount, and
    Stripe (re-fetched) for whether it was paid."""

    session_id = models.CharField(max_length=255, unique=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=CheckoutKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The PaymentIntent Stripe made for a top-up: refunds and disputes name its charge, whose PaymentIntent
    # leads back here (and to the paid grant, external_id = session_id).
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind}:{self.session_id}"


class MeterEventOutbox(models.Model):
    """One meter event per tenant, meter, price and hour, waiting to be (or already) sent to Stripe.

    `value` is in the meter's unit (seconds, or GiB-seconds for storage) and covers the ledger rows that end
    in the hour. `identifier` ("<tenant>:<meter>@<price>:<hour epoch>") is unique here and is sent as both
    the meter event's identifier and the Idempotency-Key, so writing a row twice is a no-op and resending
    never double-counts. Rows written before prices were versioned have no price (all sent or retired).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    meter = models.CharField(max_length=64)
    unit = models.CharField(max_length=16, choices=MeterUnit.choices, default=MeterUnit.SECOND)
    price_per_unit_hour = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    hour_start = models.DateTimeField()
    value = models.BigIntegerField()  # in `unit`
    identifier = models.CharField(max_length=255, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["hour_start", "pk"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="outbox_pending", condition=models.Q(sent_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return self.identifier


class CollectionState(models.TextChoices):
    """Where the collection of one of our invoices stands (also the invoice's visible payment_status)."""

    NOTHING_DUE = "nothing_due", "Nothing to pay (total zero)"
    PREPAID = "prepaid", "Prepaid: not charged; a positive total is wallet debt the next top-up pays"
    PENDING = "pending", "To be sent to Stripe"
    OPEN = "open", "Finalized in Stripe; Stripe is collecting it"
    PAYMENT_FAILED = "payment_failed", "A payment attempt failed; Stripe retries"
    PAID = "paid", "Paid"
    VOID = "void", "Voided in Stripe: not owed"
    UNCOLLECTIBLE = "uncollectible", "Marked uncollectible in Stripe: still owed"


class StripeInvoice(models.Model):
    """The collection of one of our invoices through Stripe: created when the invoice is finalized, sent
    (one Stripe invoice, an item per line, finalized, charged automatically) by a task retried until it
    succeeds, then moved by the webhook. At most one per invoice, and one Stripe invoice per record."""

    invoice = models.OneToOneField(
        "billing_invoices.Invoice", on_delete=models.PROTECT, related_name="stripe_collection"
    )
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=CollectionState.choices)
    amount_cents = models.BigIntegerField()  # the invoice's total, what Stripe is asked to collect
    stripe_invoice_id = models.CharField(max_length=255, blank=True)
    stripe_status = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_invoice_id"],
                condition=~models.Q(stripe_invoice_id=""),
                name="stripe_invoice_one_record_per_stripe_invoice",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="stripe_invoice_to_send",
                condition=models.Q(state="pending"),
            ),
            models.Index(fields=["tenant", "state"], name="stripe_invoice_tenant_state"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}:{self.state}:{self.stripe_invoice_id or '-'}"


class StripeEvent(models.Model):
    """A webhook event, stored once by its id; processed asynchronously (at most once successfully)."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=255, blank=True)
    livemode = models.BooleanField(default=False)
    stripe_created = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["received_at"]

    def __str__(self) -> str:
        return f"{self.id}:{self.type}"
