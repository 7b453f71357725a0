"""Signals instances send, each once the transaction that caused it has committed, so the apps above them
(the operator, billing) act on an instance's change without instances importing them."""

from django.dispatch import Signal

# With `instance_id`: something the operator acts on changed (a launch, an action, a failure whose pod must
# go, a region connected under a pending launch). apps.operator queues the instance's reconcile.
instance_changed = Signal()

# With `instance_id`, `event` (the timeline line's name), `from_state`, `to_state` and `billing_changed`
# (a billed interval began or ended with it). apps.billing meters the instance when `billing_changed`.
instance_state_changed = Signal()
