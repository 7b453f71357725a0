"""Admission under concurrency: fifty launches (or starts) at once against PostgreSQL, each thread with its
own connection, for a tenant whose quota admits N. Exactly N get through, the rest are refused with
quota_exceeded, and what the tenant holds never passes the limit.

Most rounds are gated: the test itself holds the tenant's quota row lock while the fifty threads are released,
waits until PostgreSQL shows all fifty blocked on a lock, and only then lets go. That makes the race certain
rather than likely (every request is in flight before any is admitted), and it shows that admission does
queue on the quota row: without the SELECT ... FOR UPDATE the requests would never wait there. Every refusal
then reports the limit fully used, which holds only if each admission saw all earlier ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection, transaction

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType, Region
from apps.core.errors import DomainError
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import HOLDS_COMPUTE, Action, State
from apps.quotas.models import GpuQuota, TenantQuota
from apps.quotas.services import QuotaExceeded
from apps.quotas.usage import usage_of
from apps.tenants.models import Tenant
from apps.tenants.roles import Role
from tests.factories import TenantFactory, UserFactory
from tests.instances.helpers import launch_body
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50
QUEUE_DEADLINE_SECONDS = 60  # how long to wait for all threads to queue on the lock; not a timing assertion


@dataclass
class Outcomes:
    admitted: list[Any] = field(default_factory=list)
    refused: list[DomainError] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    queued_on_lock: bool | None = None  # gated rounds: did all threads wait on the quota row?
    peak: int = 0  # the highest usage the watcher saw while the round ran


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _wait_for_lock_waiters(n: int) -> bool:
    deadline = time.monotonic() + QUEUE_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if _lock_waiters() >= n:
            return True
        time.sleep(0.02)
    return False


def hammer(
    work: Callable[[int], Any],
    *,
    threads: int = THREADS,
    gate: Tenant | None = None,
    watch: Callable[[], int] | None = None,
) -> Outcomes:
    """Run work(0..threads-1) in threads released together. With `gate`, hold that tenant's quota row lock
    until every thread is waiting behind it. `watch` samples usage from its own connection meanwhile."""
    outcomes = Outcomes()
    results: list[tuple[str, Any]] = [("unexpected", RuntimeError("did not run"))] * threads
    barrier = threading.Barrier(threads + 1)
    done = threading.Event()

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=QUEUE_DEADLINE_SECONDS)
            results[i] = ("admitted", work(i))
        except DomainError as exc:
            results[i] = ("refused", exc)
        except BaseException as exc:  # reported by the test, never swallowed
            results[i] = ("unexpected", exc)
        finally:
            connection.close()

    def watcher() -> None:
        assert watch is not None
        try:
            while True:
                outcomes.peak = max(outcomes.peak, watch())
                if done.is_set():
                    outcomes.peak = max(outcomes.peak, watch())
                    return
                time.sleep(0.005)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    watching = threading.Thread(target=watcher, daemon=True) if watch is not None else None
    for thread in workers:
        thread.start()
    if watching is not None:
        watching.start()
    if gate is None:
        barrier.wait()
    else:
        with transaction.atomic():
            TenantQuota.objects.select_for_update().get(tenant=gate)
            barrier.wait()
            outcomes.queued_on_lock = _wait_for_lock_waiters(threads)
    for thread in workers:
        thread.join(timeout=120)
    done.set()
    if watching is not None:
        watching.join(timeout=60)
    assert not any(thread.is_alive() for thread in workers), "threads still running"

    for kind, value in results:
        getattr(outcomes, kind).append(value)
    return outcomes


def _assert_clean(outcomes: Outcomes) -> None:
    assert outcomes.unexpected == [], outcomes.unexpected[:3]
    if outcomes.queued_on_lock is not None:
        assert outcomes.queued_on_lock, "the requests did not queue on the quota row lock"


@dataclass(frozen=True)
class Round:
    """One tenant, one kind of launch, one limit that admits exactly `admits` of fifty."""

    instance_type: str
    limits: dict[str, int]
    admits: int
    refusal: dict[str, Any]  # the details every refusal carries
    measure: str  # the usage the limit applies to: gpus, instances, or gpu_type:<slug>[@<region>]
    gpu_limits: tuple[tuple[str, str | None, int], ...] = ()  # (gpu type, region or None, max GPUs)
    held: tuple[tuple[str, str, str], ...] = ()  # instances held before the round: (type, region, state)


ROUNDS = {
    "five-gpus": Round(
        instance_type="gpu-h100x1",
        limits={"max_gpus": 5},
        admits=5,
        refusal={"resource": "gpus", "limit": 5, "used": 5, "requested": 1},
        measure="gpus",
    ),
    "zero-gpus": Round(
        instance_type="gpu-h100x1",
        limits={"max_gpus": 0},
        admits=0,
        refusal={"resource": "gpus", "limit": 0, "used": 0, "requested": 1},
        measure="gpus",
    ),
    "h100-type-limit": Round(
        instance_type="gpu-h100x1",
        limits={"max_gpus": 64},
        gpu_limits=(("h100-80gb", None, 3),),
        held=(("gpu-a100x1", "us-east-1", "running"),),  # other GPU types do not count against it
        admits=3,
        refusal={"resource": "gpu_type:h100-80gb", "limit": 3, "used": 3, "requested": 1},
        measure="gpu_type:h100-80gb",
    ),
    "h100-region-limit-partly-used": Round(
        instance_type="gpu-h100x1",
        limits={"max_gpus": 64},
        gpu_limits=(("h100-80gb", "us-east-1", 4),),
        held=(("gpu-h100x1", "us-east-1", "running"), ("gpu-h100x1", "eu-west-1", "running")),
        admits=3,
        refusal={"resource": "gpu_type:h100-80gb", "limit": 4, "used": 4, "requested": 1},
        measure="gpu_type:h100-80gb@us-east-1",
    ),
    "two-gpus-each": Round(
        instance_type="gpu-h100x2",
        limits={"max_gpus": 7},
        admits=3,
        refusal={"resource": "gpus", "limit": 7, "used": 6, "requested": 2},
        measure="gpus",
    ),
    "instances": Round(
        instance_type="cpu-4x",
        limits={"max_instances": 7},
        held=(("gpu-h100x1", "us-east-1", "stopped"),),  # a stopped instance still counts as one
        admits=6,
        refusal={"resource": "instances", "limit": 7, "used": 7, "requested": 1},
        measure="instances",
    ),
}


def _measure(tenant: Tenant, what: str) -> int:
    usage = usage_of(tenant)
    if what.startswith("gpu_type:"):
        slug, _, region_slug = what.removeprefix("gpu_type:").partition("@")
        region_id = Region.objects.get(slug=region_slug).pk if region_slug else None
        return usage.gpus_of_type(GpuType.objects.get(slug=slug).pk, region_id)
    return int(getattr(usage, what))


def _limit_of(refusal: dict[str, Any]) -> int:
    return int(refusal["limit"])


def _set_up(spec: Round, make_instance: Callable[..., Instance]) -> tuple[Tenant, User]:
    tenant, user = TenantFactory(), UserFactory()
    tenant.memberships.create(user=user, role=Role.OWNER)
    set_quota(tenant, **spec.limits)
    for gpu_slug, region_slug, max_gpus in spec.gpu_limits:
        GpuQuota.objects.create(
            tenant=tenant,
            gpu_type=GpuType.objects.get(slug=gpu_slug),
            region=Region.objects.get(slug=region_slug) if region_slug else None,
            max_gpus=max_gpus,
        )
    for type_slug, region_slug, state in spec.held:
        make_instance(
            tenant,
            created_by=user,
            instance_type=type_slug,
            region=Region.objects.get(slug=region_slug),
            state=state,
        )
    return tenant, user


def _launcher(tenant: Tenant, user: User, instance_type: str) -> Callable[[int], Instance]:
    def launch(i: int) -> Instance:
        own_tenant, own_user = Tenant.objects.get(pk=tenant.pk), User.objects.get(pk=user.pk)
        return services.instance_launch(
            actor=own_user,
            tenant=own_tenant,
            req=services.LaunchRequest(
                instance_type=instance_type, region="us-east-1", image="pytorch", name=f"racer-{i}"
            ),
        )

    return launch


ROUND_CASES = [pytest.param(name, True, id=f"{name}-gated") for name in ROUNDS] + [
    pytest.param(name, False, id=f"{name}-free") for name in ("five-gpus", "h100-type-limit", "instances")
]


@pytest.mark.parametrize(("round_name", "gated"), ROUND_CASES)
def test_fifty_concurrent_launches_admit_exactly_what_the_quota_allows(
    round_name: str, gated: bool, catalog: Any, make_instance: Callable[..., Instance]
) -> None:
    spec = ROUNDS[round_name]
    tenant, user = _set_up(spec, make_instance)
    held_before = _measure(tenant, spec.measure)

    outcomes = hammer(
        _launcher(tenant, user, spec.instance_type),
        gate=tenant if gated else None,
        watch=lambda: _measure(tenant, spec.measure),
    )

    _assert_clean(outcomes)
    assert len(outcomes.admitted) == spec.admits
    assert len(outcomes.refused) == THREADS - spec.admits
    for refusal in outcomes.refused:
        assert isinstance(refusal, QuotaExceeded)
        assert refusal.code == "quota_exceeded"
        assert refusal.status_code == 409
        # Each refusal saw every admission before it: the limit was already used up.
        assert refusal.details == spec.refusal
    launched = Instance.objects.filter(tenant=tenant, name__startswith="racer-")
    assert sorted(launched.values_list("pk", flat=True)) == sorted(i.pk for i in outcomes.admitted)
    assert set(launched.values_list("state", flat=True)) <= {State.PENDING}
    held_after = _measure(tenant, spec.measure)
    assert held_after == spec.refusal["used"]
    assert held_after <= _limit_of(spec.refusal)
    assert held_before <= outcomes.peak <= _limit_of(spec.refusal)
    assert (
        InstanceEvent.objects.filter(instance__tenant=tenant, name="launch").count()
        == AuditEvent.objects.filter(tenant=tenant, action="instance.launch").count()
        == spec.admits
    )


def test_fifty_concurrent_launches_through_the_api(catalog: Any, make_actor: Callable[..., Any]) -> None:
    """The whole stack (authentication, serializer, view, service), free-running: the barrier releases all
    fifty requests at once with nothing holding them back."""
    actor = make_actor(Role.MEMBER)
    set_quota(actor.tenant, max_gpus=4)

    def post(i: int) -> Any:
        return actor.token_client().post(actor.url("/instances"), launch_body(name=f"api-{i}"), format="json")

    outcomes = hammer(post, watch=lambda: usage_of(actor.tenant).gpus)

    _assert_clean(outcomes)
    responses = outcomes.admitted  # the test client returns every response, refusals included
    by_status: dict[int, list[Any]] = {}
    for response in responses:
        by_status.setdefault(response.status_code, []).append(response)
    assert sorted(by_status) == [201, 409], {k: v[0].content for k, v in by_status.items()}
    assert len(by_status[201]) == 4
    assert len(by_status[409]) == THREADS - 4
    for response in by_status[409]:
        error = response.json()["error"]
        assert error["code"] == "quota_exceeded"
        assert error["details"] == {"resource": "gpus", "limit": 4, "used": 4, "requested": 1}
        assert "GPUs" in error["message"]
    created = {response.json()["id"] for response in by_status[201]}
    assert {str(pk) for pk in Instance.objects.filter(tenant=actor.tenant).values_list("pk", flat=True)} == (
        created
    )
    assert usage_of(actor.tenant).gpus == 4
    assert outcomes.peak <= 4


@pytest.mark.parametrize(
    ("instances", "tries_each", "max_gpus"),
    [pytest.param(50, 1, 4, id="fifty-stopped-instances"), pytest.param(25, 2, 10, id="each-started-twice")],
)
def test_concurrent_starts_of_stopped_instances_respect_the_quota(
    instances: int,
    tries_each: int,
    max_gpus: int,
    catalog: Any,
    make_instance: Callable[..., Instance],
) -> None:
    tenant, user = TenantFactory(), UserFactory()
    tenant.memberships.create(user=user, role=Role.OWNER)
    set_quota(tenant, max_gpus=max_gpus)
    stopped = [
        make_instance(tenant, created_by=user, state=State.STOPPED, desired_state="stopped")
        for _ in range(instances)
    ]

    def start(i: int) -> Instance:
        instance = Instance.objects.select_related("tenant", "region", "instance_type").get(
            pk=stopped[i % instances].pk
        )
        return services.instance_act(
            actor=User.objects.get(pk=user.pk), instance=instance, action=Action.START
        )

    outcomes = hammer(start, threads=instances * tries_each, gate=tenant, watch=lambda: usage_of(tenant).gpus)

    _assert_clean(outcomes)
    assert len(outcomes.admitted) == max_gpus
    assert len({instance.pk for instance in outcomes.admitted}) == max_gpus  # no instance started twice
    assert len(outcomes.refused) == instances * tries_each - max_gpus
    codes = {refusal.code for refusal in outcomes.refused}
    if tries_each == 1:
        full = {"resource": "gpus", "limit": max_gpus, "used": max_gpus, "requested": 1}
        assert codes == {"quota_exceeded"}
        for refusal in outcomes.refused:
            assert refusal.details == full
    else:
        assert codes <= {"quota_exceeded", "invalid_state"}
    states = list(Instance.objects.filter(tenant=tenant).values_list("state", flat=True))
    assert states.count(State.STARTING) == max_gpus
    assert states.count(State.STOPPED) == instances - max_gpus
    assert (
        usage_of(tenant).gpus
        == max_gpus
        == sum(i.gpu_count for i in Instance.objects.filter(tenant=tenant, state__in=list(HOLDS_COMPUTE)))
    )
    assert outcomes.peak <= max_gpus
    assert InstanceEvent.objects.filter(instance__tenant=tenant, name="start").count() == max_gpus
