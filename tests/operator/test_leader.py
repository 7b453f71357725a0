"""Leader election: a PostgreSQL advisory lock per region, on a connection of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connection

from apps.operator.leader import RegionLock, identity, lock_holder, lock_key, region_led
from tests.fixtures.kube import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def locks() -> Iterator[list[RegionLock]]:
    made: list[RegionLock] = []
    yield made
    for lock in made:
        lock.release()


def make(locks: list[RegionLock], region_id: int) -> RegionLock:
    lock = RegionLock(region_id)
    locks.append(lock)
    return lock


def test_keys_are_stable_distinct_and_fit_a_bigint() -> None:
    assert lock_key(1) == lock_key(1)
    assert len({lock_key(i) for i in range(1000)}) == 1000
    assert all(-(2**63) <= lock_key(i) < 2**63 for i in range(1000))


def test_one_holder_per_region(locks: list[RegionLock]) -> None:
    first, second, other_region = make(locks, 1), make(locks, 1), make(locks, 2)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert other_region.try_acquire()  # regions are independent
    assert first.try_acquire() and first.still_held()  # asking again while holding is harmless
    first.release()
    assert not first.held
    assert second.try_acquire()
    assert not first.try_acquire()


def test_the_lock_goes_with_its_connection(locks: list[RegionLock]) -> None:
    """A leader whose database connection dies loses the region at once, and a standby takes it."""
    leader, standby = make(locks, 7), make(locks, 7)
    assert leader.try_acquire()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
            [lock_key(7)],
        )
        assert cursor.fetchone() == (True,)
    assert not leader.still_held()
    assert standby.try_acquire()


def test_lock_connections_use_the_current_database(locks: list[RegionLock]) -> None:
    lock = make(locks, 3)
    assert lock.try_acquire()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert cursor.fetchone() == (1,)


def test_a_healthy_leader_keeps_its_lock_past_many_leases(locks: list[RegionLock]) -> None:
    """The heartbeat keeps the session busy: idle_session_timeout never ends a live leader's session."""
    leader, standby = RegionLock(11, lease_seconds=2), make(locks, 11)
    locks.append(leader)
    assert leader.try_acquire()
    time.sleep(3 * leader.lease)  # no still_held() calls meanwhile: only the heartbeat runs
    assert leader.lease_valid() and leader.still_held()
    assert not standby.try_acquire()


FROZEN_RETRY = 0.2  # the standby's retry interval in the test below
# For the new connection of each try (five a second here) and a loaded 2-core machine; measured: the
# takeover came 2.0-2.2 s after the freeze with a 2 s lease, in 5 runs at a load average above 4.
FROZEN_MARGIN = 1.5


def test_a_frozen_leader_loses_its_lock_within_the_lease(locks: list[RegionLock]) -> None:
    """A leader that stops talking (frozen process, lost host) is released by the server within the lease,
    and considers itself deposed before that."""
    leader, standby = RegionLock(12, lease_seconds=2), make(locks, 12)
    locks.append(leader)
    assert leader.try_acquire()
    assert lock_holder(lock_key(12)) == f"gpucloud-operator {identity()}"
    leader._stop_heartbeat.set()  # freeze it: no heartbeat, no still_held()
    frozen_at = time.monotonic()
    wait_until(standby.try_acquire, timeout=30, interval=FROZEN_RETRY, what="the standby to take the lock")
    took_over = time.monotonic() - frozen_at
    # idle_session_timeout ends the session at most a lease after its last heartbeat (which came before
    # the freeze), and the standby holds the lock at its next try.
    bound = leader.lease + FROZEN_RETRY + FROZEN_MARGIN
    print(f"takeover from a frozen leader: {took_over:.2f}s (bound {bound:.1f}s)")
    assert took_over <= bound, f"took over after {took_over:.1f}s, bound {bound:.1f}s"
    assert lock_holder(lock_key(12)) == f"gpucloud-operator {identity()}"  # the standby's session now
    assert not leader.lease_valid()  # it stopped acting two thirds into the lease
    assert not leader.still_held()


def test_region_led_says_whether_an_operator_holds_the_regions_lock(locks: list[RegionLock]) -> None:
    assert not region_led(7)
    lock = make(locks, 7)
    assert lock.try_acquire()
    assert region_led(7) and not region_led(8)
    lock.release()
    assert not region_led(7)
