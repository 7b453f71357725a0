"""The small interface instances use for their volumes, and nothing else of storage's writes.

Instances sit above storage (docs/architecture.md, the layer order) and attach and release volumes inside
their own transactions: attaching at launch must commit with the instance row and its admission, releasing
at terminate with the terminated state, so a signal sent on commit would leave a window where a volume is
held by nothing or by a terminated instance. These five calls are therefore direct, but they are the whole
contract: apps/instances imports this module, never apps.storage.services, and a change to storage's other
writes cannot reach the instances' code.
"""

from __future__ import annotations

from apps.storage.services import (
    attach_at_launch,
    check_mount_requests,
    delete_with_instance,
    release_for_terminated,
    require_volumes_usable,
)

__all__ = [
    "attach_at_launch",  # launch: lock the tenant's named volumes and attach them
    "check_mount_requests",  # launch: the body's `volumes`, checked before the database
    "delete_with_instance",  # terminate(delete_volumes=true): delete them once the instance is gone
    "release_for_terminated",  # terminated: free the volumes again (or delete them if asked)
    "require_volumes_usable",  # start/restart: 409 naming a volume that can no longer be mounted
]
