"""Collecting our invoices through Stripe (docs/billing.md "Collecting invoices").

The month close sends `apps.billing.invoices.signals.invoice_finalized` on commit; the receiver writes one
StripeInvoice per finalized invoice and decides what becomes of it:

- a total of zero: `nothing_due`;
- a prepaid tenant's positive total: `prepaid`, never charged. The invoice already applied every credit the
  wallet held for the month, so the rest is the wallet's debt (a negative balance), which the next top-up
  pays first; charging the card as well would collect it twice;
- a postpaid tenant's positive total: `pending`, to be sent to Stripe.

Sending makes one Stripe invoice (charge_automatically) with one item per invoice line for the line's own
amount in cents and one negative item for the credits applied, so Stripe's total is ours to the cent, then
finalizes it with auto_advance: Stripe charges the saved payment method and retries on its own schedule.
Every create carries an Idempotency-Key derived from our invoice (and line), and because Stripe keeps keys
for only 24 hours, each attempt first looks for what an earlier one made (the customer's invoices by our
metadata, the invoice's items by line), so a retry days later still creates nothing twice. A failure keeps
the record pending with capped backoff; the beat task `send_invoices` retries it until it is sent, and
sweeps up invoices finalized recently whose record was never written (a crash between the close's commit
and the receiver). The webhook moves the record on from there (dunning.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.invoices.models import Invoice, InvoiceStatus, LineKind
from apps.billing.models import BillingAccount, BillingMode
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import currency, customer_for, to_cents
from apps.billing.stripe.models import CollectionState, StripeInvoice
from apps.billing.stripe.selectors import decide
from apps.billing.stripe.usage_export import backoff_seconds

logger = logging.getLogger(__name__)

# How far back the sweep looks for finalized invoices without a record: long enough to outlast any outage,
# short enough that installing this does not charge invoices from long before it.
SWEEP_WINDOW = timedelta(days=7)
# An earlier attempt's Stripe invoice was created after our record; the margin covers clock differences.
FIND_MARGIN = timedelta(hours=1)
METADATA_INVOICE = "gpucloud_invoice_id"
METADATA_LINE = "gpucloud_line"
CREDITS_LINE = "credits"


class CollectionMismatch(Exception):
    """The Stripe invoice holds items of ours that do not add up to our total (changed by hand in Stripe):
    it is not finalized, and the record stays pending with the error until staff look at it."""


def collections_create(*, invoice_ids: Iterable[Any], now: datetime | None = None) -> list[StripeInvoice]:
    """One record per finalized invoice among `invoice_ids` that has none (idempotent: an invoice keeps its
    first record); sending is queued once this commits. Returns the records of those invoices."""
    from apps.billing.stripe import tasks  # tasks import this module

    now = now or timezone.now()
    invoices = list(
        Invoice.objects.filter(pk__in=list(invoice_ids), status=InvoiceStatus.FINALIZED).exclude(
            stripe_collection__isnull=False
        )
    )
    if not invoices:
        return []
    modes = dict(
        BillingAccount.objects.filter(tenant_id__in={i.tenant_id for i in invoices}).values_list(
            "tenant_id", "mode"
        )
    )
    records = [
        StripeInvoice(
            invoice=invoice,
            tenant_id=invoice.tenant_id,
            state=decide(invoice, modes.get(invoice.tenant_id, BillingMode.PREPAID)),
            amount_cents=to_cents(invoice.total),
            next_attempt_at=now,
            state_changed_at=now,
            created_at=now,
        )
        for invoice in invoices
    ]
    with transaction.atomic():
        StripeInvoice.objects.bulk_create(records, ignore_conflicts=True)
        if any(r.state == CollectionState.PENDING for r in records):
            transaction.on_commit(lambda: tasks.send_invoices.delay())
    logger.info("invoice collection records written", extra={"count": len(records)})
    return list(StripeInvoice.objects.filter(invoice__in=invoices).order_by("pk"))


def on_invoice_finalized(sender: Any, *, invoice_ids: Iterable[Any], **kwargs: Any) -> None:
    """apps.billing.invoices.signals.invoice_finalized (sent on commit of the close). Writes to our database
    only; Stripe is called by the task, so an outage never reaches the close."""
    try:
        collections_create(invoice_ids=invoice_ids)
    except Exception:
        # The close has committed; the sweep in send_invoices writes the records later.
        logger.exception("writing invoice collection records failed; the sweep retries")


def collections_sweep(*, now: datetime | None = None) -> int:
    """Records for invoices finalized within SWEEP_WINDOW that have none. Returns how many were written."""
    now = now or timezone.now()
    missing = Invoice.objects.filter(
        status=InvoiceStatus.FINALIZED,
        finalized_at__gte=now - SWEEP_WINDOW,
        stripe_collection__isnull=True,
    ).values_list("pk", flat=True)
    return len(collections_create(invoice_ids=list(missing), now=now))


# --- sending ---------------------------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0


def invoices_send(*, now: datetime | None = None, limit: int = 50) -> SendResult:
    """Send due pending records, one per transaction: the row is locked with SKIP LOCKED (two workers never
    send the same invoice at once) and the lock is held only while that invoice is sent. Without Stripe
    keys nothing is sent and records wait."""
    result = SendResult()
    if not gw.is_configured():
        return result
    client = gw.gateway()
    now = now or timezone.now()
    for _ in range(limit):
        with transaction.atomic():
            record = (
                StripeInvoice.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("invoice", "tenant")
                .filter(state=CollectionState.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at", "pk")
                .first()
            )
            if record is None:
                break
            if invoice_send(client=client, record=record, now=now):
                result.sent += 1
            else:
                result.failed += 1  # its next attempt is later: the next pick is another record
    return result


def invoice_send(*, client: gw.StripeGateway, record: StripeInvoice, now: datetime) -> bool:
    """Send one locked pending record. A failure is kept on the record (attempts, last_error, backoff) and
    returns False."""
    try:
        stripe_invoice = _send(client, record)
    except (gw.StripeUnavailable, CollectionMismatch) as exc:
        record.attempts += 1
        record.next_attempt_at = now + timedelta(seconds=backoff_seconds(record.attempts))
        record.last_error = str(exc)[:500]
        record.save(update_fields=["stripe_invoice_id", "attempts", "next_attempt_at", "last_error"])
        if isinstance(exc, CollectionMismatch):
            logger.error("stripe invoice differs from ours", extra={"invoice": str(record.invoice_id)})
        return False
    record.attempts += 1
    record.last_error = ""
    record.sent_at = timezone.now()
    record.stripe_status = stripe_invoice.status or ""
    before = record.state
    record.state = state_after(record.state, stripe_invoice.status) or CollectionState.OPEN
    record.state_changed_at = record.sent_at
    record.save(
        update_fields=[
            "stripe_invoice_id",
            "stripe_status",
            "state",
            "state_changed_at",
            "attempts",
            "last_error",
            "sent_at",
        ]
    )
    audit_record(
        actor=None,
        action="invoice.sent_for_payment",
        target=record.invoice,
        tenant=record.tenant,
        changes={"payment_status": {"from": before, "to": record.state}},
        metadata={"stripe_invoice": record.stripe_invoice_id, "amount_cents": record.amount_cents},
    )
    return True


def _send(client: gw.StripeGateway, record: StripeInvoice) -> gw.Invoice:
    invoice = record.invoice
    customer = customer_for(tenant=record.tenant, client=client)
    key = str(invoice.pk)
    found: gw.Invoice | None = None
    if not record.stripe_invoice_id:
        found = client.find_invoice(
            customer_id=customer.customer_id,
            created_since=record.created_at - FIND_MARGIN,
            metadata_key=METADATA_INVOICE,
            metadata_value=key,
        )
        if found is None:
            found = client.create_invoice(
                customer_id=customer.customer_id,
                currency=currency(),
                description=f"gpucloud invoice {invoice.number} ({invoice.month:%Y-%m})",
                metadata={
                    METADATA_INVOICE: key,
                    "gpucloud_invoice_number": str(invoice.number),
                    "tenant_id": str(record.tenant_id),
                },
                idempotency_key=f"gpucloud-invoice:{key}",
            )
        # Kept even if a later step fails (invoice_send saves it), so the next attempt goes straight on.
        record.stripe_invoice_id = found.id
    else:
        found = client.retrieve_invoice(record.stripe_invoice_id)
    if found.status not in (None, "draft"):
        return found  # finalized by an earlier attempt: nothing to add
    _add_items(client, record, customer.customer_id)
    return client.finalize_invoice(
        record.stripe_invoice_id, idempotency_key=f"gpucloud-invoice-finalize:{key}"
    )


def items_of(invoice: Invoice) -> list[tuple[str, int, str, dict[str, str]]]:
    """(line key, cents, description, metadata) of every item the Stripe invoice gets: each line with an
    amount (usage, adjustments of earlier months, credit carried between invoices; a line of 0.00 adds
    nothing), then the credits applied as a negative item."""
    out = []
    for line in invoice.lines.order_by("position"):
        cents = to_cents(line.amount)
        if cents == 0:
            continue
        if line.kind == LineKind.CREDIT:  # credit carried between invoices: an amount, no usage
            description, metadata = line.description, {"kind": line.kind}
        else:
            description = f"{line.description}: {line.quantity_hours} h at {line.unit_price_per_hour}/h"
            metadata = {
                "kind": line.kind,
                "usage_month": f"{line.usage_month:%Y-%m}",
                "meter": line.meter,
                "quantity_seconds": str(line.quantity_seconds),
                "unit_price_per_hour": str(line.unit_price_per_hour),
            }
        out.append((str(line.position), cents, description[:500], metadata))
    if invoice.credits_applied > 0:
        out.append((CREDITS_LINE, -to_cents(invoice.credits_applied), "Credits applied", {}))
    return out


def _add_items(client: gw.StripeGateway, record: StripeInvoice, customer_id: str) -> None:
    invoice = record.invoice
    key = str(invoice.pk)
    present = {
        item.metadata[METADATA_LINE]: item.amount
        for item in client.invoice_items(record.stripe_invoice_id)
        if item.metadata.get(METADATA_INVOICE) == key and METADATA_LINE in item.metadata
    }
    wanted = items_of(invoice)
    if sum(cents for _, cents, _, _ in wanted) != record.amount_cents:
        raise CollectionMismatch(
            f"invoice {invoice.number}: its lines and credits do not add up to its total"
        )
    for line_key, cents, description, metadata in wanted:
        if line_key in present:
            if present[line_key] != cents:
                raise CollectionMismatch(
                    f"Stripe invoice {record.stripe_invoice_id}: item {line_key} is {present[line_key]} "
                    f"cents, ours {cents}"
                )
            continue
        client.create_invoice_item(
            customer_id=customer_id,
            invoice_id=record.stripe_invoice_id,
            currency=currency(),
            amount_cents=cents,
            description=description,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            metadata={METADATA_INVOICE: key, METADATA_LINE: line_key, **metadata},
            idempotency_key=f"gpucloud-invoice-item:{key}:{line_key}",
        )


# --- states ------------------------------------------------------------------------------------------------

# Stripe's invoice status -> ours, for statuses that decide it on their own.
_SETTLED = {
    "paid": CollectionState.PAID,
    "void": CollectionState.VOID,
    "uncollectible": CollectionState.UNCOLLECTIBLE,
}
# Still owed after Stripe's attempts: the tenant is past due while one of its invoices is in these.
OUTSTANDING = frozenset({CollectionState.PAYMENT_FAILED, CollectionState.UNCOLLECTIBLE})


def state_after(current: str, stripe_status: str | None, *, payment_failed: bool = False) -> str | None:
    """Our state from Stripe's (re-fetched) status, or None to keep the current one. Level-triggered: a
    late or repeated event cannot undo a payment, since the re-fetched status says paid."""
    if stripe_status in _SETTLED:
        return _SETTLED[stripe_status]
    if stripe_status == "open":
        if payment_failed:
            return CollectionState.PAYMENT_FAILED
        if current == CollectionState.PENDING:
            return CollectionState.OPEN
    return None


def record_for(stripe_invoice: gw.Invoice) -> StripeInvoice | None:
    """Our record of a Stripe invoice, locked: by its id, or by our metadata when the event comes before
    the sending transaction recorded the id (the lock waits for it)."""
    records = StripeInvoice.objects.select_for_update().select_related("invoice", "tenant")
    record = records.filter(stripe_invoice_id=stripe_invoice.id).first()
    if record is None and stripe_invoice.metadata.get(METADATA_INVOICE):
        try:
            invoice_id = uuid.UUID(stripe_invoice.metadata[METADATA_INVOICE])
        except ValueError:
            return None
        record = records.filter(invoice_id=invoice_id).first()
    return record


def record_sync(record: StripeInvoice, stripe_invoice: gw.Invoice, *, payment_failed: bool = False) -> bool:
    """Move the record to what Stripe says now. Returns True if its state changed."""
    new = state_after(record.state, stripe_invoice.status, payment_failed=payment_failed)
    record.stripe_status = stripe_invoice.status or record.stripe_status
    if not record.stripe_invoice_id:
        record.stripe_invoice_id = stripe_invoice.id
    if new is None or new == record.state:
        record.save(update_fields=["stripe_status", "stripe_invoice_id"])
        return False
    before, record.state, record.state_changed_at = record.state, new, timezone.now()
    record.save(update_fields=["stripe_status", "stripe_invoice_id", "state", "state_changed_at"])
    audit_record(
        actor=None,
        action="invoice.payment_status",
        target=record.invoice,
        tenant=record.tenant,
        changes={"payment_status": {"from": before, "to": new}},
        metadata={"stripe_invoice": stripe_invoice.id},
    )
    return True


def has_outstanding(*, tenant_id: Any) -> bool:
    return StripeInvoice.objects.filter(tenant_id=tenant_id, state__in=OUTSTANDING).exists()
