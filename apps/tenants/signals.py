"""Signals of the tenants app, for the apps above it that must react without being imported here."""

from django.dispatch import Signal

# Sent after the change has committed, with `tenant_id` and `status` (the new one): suspended, reactivated
# or closed. Object storage suspends or restores the tenant's access keys on it.
tenant_status_changed = Signal()
