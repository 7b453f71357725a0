"""Signals instances send, so the apps above them (the operator, billing) act on an instance's change without
instances importing them."""

from django.dispatch import Signal

# Sent once the change has committed, with `instance_id`, and the `generation` and `state` the change left:
# something the operator acts on changed (a launch, an action, a failure whose pod must go, a region
# connected under a pending launch). apps.operator queues the instance's reconcile.
instance_changed = Signal()

# Sent with every timeline line (an action or an observation), inside the transaction that writes it, with
# `instance_id`, `event` (the line's name), `from_state`, `to_state`, `billing_changed` (a billed interval
# began or ended with it) and `billing_running` (the billing clock runs after it). A receiver that acts
# outside the database defers to transaction.on_commit: apps.billing queues the instance's metering, once
# committed, when a billed interval ended.
instance_state_changed = Signal()
