from celery import shared_task
from django.utils import timezone

from apps.billing import metering
from apps.billing.invoices import periods, services


@shared_task(acks_late=True)
def close_previous_month() -> list[str]:
    """Beat runs this on the 1st of each month (UTC): meter what is still open, then invoice last month.
    Safe to re-run: finalized invoices are returned as they are."""
    now = timezone.now()
    metering.meter_all(now=now)
    month = periods.previous_month(periods.month_of(now))
    return [str(invoice.number) for invoice in services.period_close(month=month, now=now)]
