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

# Sent once committed, with `cluster_id`, when a cluster's nodes need acting on as a whole: one failed
# before the cluster ran (the others go too: all or nothing), or one was lost after (replace, stop or fail,
# per its on_node_failure). apps.instances' own receiver settles it (cluster_services.cluster_settle): the
# sync that notices runs inside a node's transaction and must not lock the other nodes from there.
cluster_needs_settling = Signal()
