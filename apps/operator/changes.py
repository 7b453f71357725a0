"""The leader reconciles a changed instance the moment its change commits (docs/operator.md "The launch
path").

Every write the operator must act on NOTIFYs `gpucloud_instance_changed` with "<region_id> <instance_id>"
(apps/instances/services._queue_reconcile); PostgreSQL delivers it when, and only if, the transaction
commits. While a region's leader leads, one thread LISTENs on that channel and queues the ids of its region;
a few workers run each instance's reconcile. The queue is keyed by instance (workqueue.KeyedQueue): an id
already waiting is not queued twice, and a change arriving while its instance is being reconciled runs it
once more afterwards, never concurrently. The Celery task (queued a few seconds later, receivers.py) and the
resync stay the fallbacks for a notification missed while no leader listened.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection

from apps.core import notify
from apps.operator import reconcile_instances, workqueue
from apps.operator.watcher import describe, release_connection

logger = logging.getLogger(__name__)


class ChangeListener:
    def __init__(
        self,
        region_id: Any,
        *,
        workers: int = 4,
        reconcile: Callable[[str], None] = reconcile_instances.reconcile_instance,
    ) -> None:
        self.region, self.workers, self.reconcile = str(region_id), workers, reconcile
        self.queue = workqueue.KeyedQueue()
        self.listening = threading.Event()  # LISTEN is in place (tests wait for it)

    def heard(self, channel: str, payload: str) -> None:
        region, _, instance_id = payload.partition(" ")
        if region != self.region:
            return  # another region's leader (perhaps in another process) has it
        try:
            key = str(uuid.UUID(instance_id))
        except ValueError:
            logger.warning("ignoring a malformed %s notification: %r", channel, payload[:100])
            return
        self.queue.put(key, (key,))

    def threads(self, stop: threading.Event, name: str) -> list[threading.Thread]:
        """The listening thread and the workers, not started; all return once `stop` is set."""
        listen = threading.Thread(
            target=notify.listen_forever,
            args=((notify.INSTANCE_CHANGED,), self.heard, stop),
            kwargs={"on_listening": self.listening.set},
            name=f"{name}-listen",
            daemon=True,
        )
        workers = [
            threading.Thread(target=self._work, args=(stop,), name=f"{name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        return [listen, *workers]

    def _work(self, stop: threading.Event) -> None:
        try:
            workqueue.work(self.queue, self._handle, stop)
        finally:
            connection.close()

    def _handle(self, instance_id: str) -> None:
        try:
            self.reconcile(instance_id)
        except Exception as exc:
            # The Celery task and the resync retry it; this thread keeps serving the others.
            logger.warning("reconcile of instance %s on notification failed: %s", instance_id, describe(exc))
        finally:
            release_connection()
