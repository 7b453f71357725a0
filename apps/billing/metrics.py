"""Billing metrics read at scrape time (web's /metrics; docs/operations.md "Metrics")."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class StripeBacklogCollector(Collector):
    """The meter-event outbox (one aggregated query) and webhook events not yet processed (another)."""

    def collect(self) -> Iterator[Metric]:
        from apps.billing.stripe.models import MeterEventOutbox, StripeEvent

        now = timezone.now()
        outbox = MeterEventOutbox.objects.filter(sent_at__isnull=True).aggregate(
            pending=Count("pk"),
            failing=Count("pk", filter=Q(attempts__gt=0)),
            oldest=Min("created_at"),
        )
        pending = GaugeMetricFamily(
            "gpucloud_stripe_outbox_pending", "Meter events waiting to be sent to Stripe."
        )
        pending.add_metric([], float(outbox["pending"]))
        failing = GaugeMetricFamily(
            "gpucloud_stripe_outbox_failing", "Meter events waiting after at least one failed attempt."
        )
        failing.add_metric([], float(outbox["failing"]))
        oldest = GaugeMetricFamily(
            "gpucloud_stripe_outbox_oldest_pending_age_seconds",
            "Age of the oldest meter event not yet sent (0 when none waits).",
        )
        oldest.add_metric([], (now - outbox["oldest"]).total_seconds() if outbox["oldest"] else 0.0)
        events = StripeEvent.objects.filter(processed_at__isnull=True).aggregate(n=Count("pk"))
        unprocessed = GaugeMetricFamily(
            "gpucloud_stripe_webhook_events_unprocessed", "Stripe webhook events received, not yet processed."
        )
        unprocessed.add_metric([], float(events["n"]))
        yield pending
        yield failing
        yield oldest
        yield unprocessed
