"""The Kubernetes side of instances: names, frozen specs, pure manifest builders (this package's
names.py, specs.py, manifests.py), and the client wrapper, reconciler and watcher built on them."""
