"""Signals storage sends, each once the transaction that caused it has committed, so the apps above it (the
operator) act on a volume's change without storage importing them."""

from django.dispatch import Signal

# With `volume_id`: something the cluster must follow changed (created, resized, deletion begun).
# apps.operator queues the volume's reconcile.
volume_changed = Signal()

# With `volume_id` and `instance_ids`: the volume's claim is bound, and these instances (attached to it, not
# terminated) waited for it before their pod could be made. apps.operator reconciles them now.
volume_bound = Signal()
