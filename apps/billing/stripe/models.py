"""What we keep about Stripe: one customer per tenant, the meters and prices usage is exported to, the
Checkout Sessions we opened, the meter-event outbox and every webhook event received (once)."""

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


class StripeMeter(models.Model):
    """The Billing Meter and metered price one of our meter keys (instance_seconds:<type>) is exported to."""

    meter_key = models.CharField(max_length=64, unique=True)
    event_name = models.CharField(max_length=100, unique=True)
    meter_id = models.CharField(max_length=255)
    price_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.meter_key} -> {self.meter_id}"


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
    """One meter event per tenant, meter and closed hour, waiting to be (or already) sent to Stripe.

    `identifier` ("<tenant>:<meter>:<hour epoch>") is unique here and is sent as both the meter event's
    identifier and the Idempotency-Key, so writing a row twice is a no-op and resending never double-counts.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    meter = models.CharField(max_length=64)
    hour_start = models.DateTimeField()
    value = models.BigIntegerField()  # seconds
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
