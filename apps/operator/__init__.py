"""The Kubernetes side: names, frozen specs and pure manifest builders (names.py, specs.py, manifests.py); the
client wrapper, reconciler and watcher built on them; the reconciles of instances and volumes; and the
long-running `manage.py operator`. It depends on instances and storage, never the reverse: they announce
their changes (apps/instances/signals.py, apps/storage/signals.py) and this app reconciles them."""
