"""What the month close tells the rest of billing, sent on commit (the receivers do I/O, e.g. Stripe)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent on commit of a close, once per batch of invoices finalized in it: kwargs `invoice_ids` (list of UUIDs).
invoice_finalized = Signal()
