"""Signals the catalog sends, so the apps above it act on a region's change without the catalog importing
them."""

from django.dispatch import Signal

# Sent after the commit that stored a region's operator kubeconfig (region_connect, seed_catalog's
# connect_regions), with `region`. Instances waiting in that region start: apps.instances queues them.
region_connected = Signal()
