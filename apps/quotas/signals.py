"""Signals quotas send, so the apps above them act on a change of limits without quotas importing them."""

from django.dispatch import Signal

# Sent once a change of a tenant's limits has committed (quota_set, an approved quota request), with
# `tenant_id`. apps.operator applies the tenant's namespace objects (its ResourceQuota) in every region
# where it has something: they are applied when the quota changes, not on every launch.
quota_changed = Signal()
