"""Signals object storage sends, so the apps above it act without object storage importing them."""

from django.dispatch import Signal

# Sent by each usage sampling run (apps/storage/objects/usage.py) with `samples` (the buckets and the bytes
# each stores now) and `now`. apps.billing writes the usage ledger from them and returns how many rows
# were new.
buckets_sampled = Signal()
