"""A Celery beat scheduler that several beat processes can run at once: one sends, the others stand by.

Celery beat has no leader election: two beats send every periodic task twice. `LeaderScheduler` keeps
beat's own schedule logic and adds, in Redis (the broker beat needs anyway):

- a lease `<prefix>:leader` (SET NX with a TTL of BEAT_LEASE_SECONDS) that the leader renews on every tick
  (beat ticks at least three times per lease) and deletes on a clean shutdown. A standby tries to take it
  every third of a lease, so after a leader dies the standby sends within about 4/3 of a lease.
- the schedule's state `<prefix>:last-run` (entry name -> when it last ran). A new leader loads it, so a
  task the old leader ran is not run again, and one that came due during the handover runs once.

Each send first records its run in that hash with a script that checks the lease is still ours: a leader
that was paused past its lease (and replaced) finds out there and sends nothing. Recording before sending
means a crash between the two loses that one run rather than doubling it; the next run comes on schedule.
Every message carries `gpucloud_beat_run_at` and `gpucloud_beat_previous_run` (ISO times) and
`gpucloud_beat_sender` (the beat's identity) headers. Every tick touches HEARTBEAT_FILE (apps/core/
heartbeat.py), the chart's liveness probe.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from datetime import datetime
from typing import Any

import redis
from celery.beat import ScheduleEntry, Scheduler
from django.conf import settings

from apps.core import heartbeat

logger = logging.getLogger(__name__)

_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
    "return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RECORD = (
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('hset', KEYS[2], ARGV[2], ARGV[3]) return 1"
)


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else ""


class LeaderScheduler(Scheduler):
    """Only the holder of the Redis lease sends due tasks; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lease = float(getattr(settings, "BEAT_LEASE_SECONDS", 30))
        prefix = getattr(settings, "BEAT_KEY_PREFIX", "gpucloud:beat")
        self.leader_key, self.state_key = f"{prefix}:leader", f"{prefix}:last-run"
        self.identity = f"{os.getpid()}@{socket.gethostname()}/{uuid.uuid4().hex[:8]}"
        self.leading = False
        self.redis = redis.Redis.from_url(
            str(settings.CELERY_BROKER_URL),
            decode_responses=True,
            socket_timeout=self.lease / 3,
            socket_connect_timeout=self.lease / 3,
        )
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._record = self.redis.register_script(_RECORD)
        super().__init__(*args, **kwargs)
        # Ticks (and so renewals) at least three times per lease, whatever the schedule.
        self.max_interval = max(1, int(min(self.max_interval or self.lease, self.lease / 3)))

    # --- leadership -------------------------------------------------------------------------------------

    def _lease_ms(self) -> int:
        return int(self.lease * 1000)

    def _hold(self) -> bool:
        """Renew the lease if ours, else try to take it; True while this process leads."""
        try:
            if self.leading:
                if self._renew(keys=[self.leader_key], args=[self.identity, self._lease_ms()]):
                    return True
                logger.warning("beat: lost the lease; standing by")
                self.leading = False
                return False
            if self.redis.set(self.leader_key, self.identity, nx=True, px=self._lease_ms()):
                self._load_state()
                self.leading = True
                logger.info("beat: leading (%s)", self.identity)
                return True
        except redis.RedisError as exc:
            if self.leading:
                logger.warning("beat: cannot renew the lease (%s); standing by", exc)
            self.leading = False
        return False

    def _load_state(self) -> None:
        """Take over the schedule where the previous leader left it."""
        stored: dict[str, str] = self.redis.hgetall(self.state_key)  # type: ignore[assignment]
        for name, when in stored.items():
            entry = self.schedule.get(name)
            if entry is not None and when:
                entry.last_run_at = datetime.fromisoformat(when)
        self._heap = None  # rebuilt from the loaded times on the next tick

    def tick(self, *args: Any, **kwargs: Any) -> float:
        heartbeat.beat()  # leader or standby, Redis up or not: this loop goes round (the liveness probe)
        if not self._hold():
            return self.lease / 3 * random.uniform(0.8, 1.0)  # noqa: S311
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        # beat has already advanced the entry: the schedule holds this run's time, `entry` the previous one.
        name = str(entry.name)
        run_at = _iso(self.schedule[name].last_run_at)
        try:
            recorded = self._record(
                keys=[self.leader_key, self.state_key], args=[self.identity, name, run_at]
            )
        except redis.RedisError as exc:
            logger.warning("beat: cannot record %s (%s); not sent", entry.name, exc)
            return
        if not recorded:
            logger.warning("beat: lease lost before sending %s; not sent, standing by", entry.name)
            self.leading = False
            return
        headers = {
            "gpucloud_beat_run_at": run_at,
            "gpucloud_beat_previous_run": _iso(entry.last_run_at),
            "gpucloud_beat_sender": self.identity,
        }
        options = dict(entry.options or {})
        entry.options = {**options, "headers": {**(options.get("headers") or {}), **headers}}
        super().apply_entry(entry, producer=producer)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.leading:
                try:
                    self._release(keys=[self.leader_key], args=[self.identity])
                except redis.RedisError:
                    logger.info("beat: could not release the lease; it expires", exc_info=True)
                self.leading = False

    @property
    def info(self) -> str:
        return f"    . leader lease: {self.lease:.0f}s at {self.leader_key} (this beat: {self.identity})"
