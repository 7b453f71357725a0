"""Signals tenants send, so that the apps above them act on a tenant's change without tenants importing them
(the layer order is core < audit < accounts < tenants < ... < instances < billing)."""

from django.dispatch import Signal

# Sent by tenant_create inside its transaction, once the tenant and its owner's membership are saved, with
# `tenant` and `actor` (its owner). apps.quotas gives it the default limits; apps.billing its sign-up credit.
tenant_created = Signal()

# Sent by tenant_suspend inside its transaction, once the status is saved, with `tenant`, `actor` (None for
# the system) and `stop_reason` (the reason code each stopped instance records). A receiver stops what the
# tenant runs and returns what it stopped as a list of {"id": str, "name": str}; apps.instances handles it.
tenant_suspended = Signal()

# Sent after a status change has committed, with `tenant_id` and `status` (the new one): suspended,
# reactivated or closed. Object storage suspends or restores the tenant's access keys on it.
tenant_status_changed = Signal()

# Sent by tenant_close inside its transaction, once the tenant is locked and marked closed and its tokens and
# invitations are revoked, with `tenant` and `actor` (None for the system). A closed tenant runs nothing and
# is billed for nothing more: apps.instances terminates its instances, apps.storage begins deleting its
# volumes and closes its object storage. The receivers do not depend on each other's order.
tenant_closing = Signal()
