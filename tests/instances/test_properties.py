"""Random sequences of customer actions and operator reports against the real database and services.

Each example gets a fresh tenant with random limits (inside a savepoint rolled back at the end), then runs a
random list of steps: launch, stop, start, restart, terminate, rename, an operator observation, or a
reconcile pass. A small reference model predicts every outcome; after each step the test checks that:

- every instance is in a valid state, the one the model predicts, and desired_state follows the last action;
- a refused action (invalid_state, quota_exceeded, a taken name) changes nothing at all;
- quota usage equals what the instances holding compute hold (HOLDS_COMPUTE, less stopped or failed
  instances being terminated), and never passes any limit;
- a terminated instance never comes back;
- every transition wrote an InstanceEvent, and only transitions did.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType, Region
from apps.core.errors import DomainError
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import (
    HOLDS_COMPUTE,
    LIVE,
    STARTS_BILLING,
    Action,
    FailureReason,
    InvalidTransition,
    Observation,
    State,
    after_action,
    after_observation,
    desired_after,
)
from apps.operator import reconcile_instances
from apps.quotas.models import GpuQuota, TenantQuota
from apps.quotas.usage import usage_of
from apps.tenants.roles import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.instances.helpers import Catalog

pytestmark = pytest.mark.django_db

# instance type -> (gpus, vCPU, memory GiB, GPU type slug); both regions have capacity for all of them.
TYPES = {
    "gpu-h100x1": (1, 24, 220, "h100-80gb"),
    "gpu-h100x2": (2, 48, 440, "h100-80gb"),
    "cpu-4x": (0, 4, 16, None),
}
REGIONS = ["us-east-1", "eu-west-1"]
NAMES = ["n0", "n1", "n2", "alpha", "beta"]  # launches are named n0, n1, ...; renames reuse a few of them


@dataclass
class Limits:
    max_gpus: int
    max_instances: int
    max_vcpu: int
    max_memory_gib: int
    h100: tuple[str | None, int] | None  # (region or None for all, max GPUs) of a per-type limit


@dataclass
class Model:
    """What the test expects of one instance."""

    pk: Any
    type_slug: str
    region: str
    name: str
    state: State = State.PENDING
    desired: str = "running"
    generation: int = 1
    events: int = 1  # the launch
    # Its pod holds GPUs and it is billed: from a container start (Ready or not) until it is stopped,
    # restarted, terminated or fails.
    billed: bool = False
    # Terminated from stopped or failed: `terminating` without a pod, holding nothing (see
    # test_terminating_an_idle_instance_holds_nothing in tests/quotas/test_usage.py).
    idle_terminating: bool = False

    @property
    def gpus(self) -> int:
        return TYPES[self.type_slug][0]

    @property
    def vcpu(self) -> int:
        return TYPES[self.type_slug][1]

    @property
    def memory_gib(self) -> int:
        return TYPES[self.type_slug][2]


@dataclass
class World:
    limits: Limits
    instances: list[Model] = field(default_factory=list)
    audits: int = 0
    launched: int = 0

    def holding(self) -> list[Model]:
        return [m for m in self.instances if m.state in HOLDS_COMPUTE and not m.idle_terminating]

    def refusal(self, type_slug: str, region: str, *, new_instance: bool) -> str | None:
        """The resource admission refuses, in the order admission checks them; None if admitted."""
        gpus, vcpu, memory, gpu_type = TYPES[type_slug]
        holding = self.holding()
        if new_instance and sum(m.state in LIVE for m in self.instances) + 1 > self.limits.max_instances:
            return "instances"
        if gpus and sum(m.gpus for m in holding) + gpus > self.limits.max_gpus:
            return "gpus"
        if gpus and gpu_type == "h100-80gb" and self.limits.h100 is not None:
            where, limit = self.limits.h100
            if where in (None, region):
                used = sum(m.gpus for m in holding if TYPES[m.type_slug][3] == gpu_type)
                if where is not None:
                    used = sum(
                        m.gpus for m in holding if TYPES[m.type_slug][3] == gpu_type and m.region == where
                    )
                if used + gpus > limit:
                    return "gpu_type:h100-80gb"
        if sum(m.vcpu for m in holding) + vcpu > self.limits.max_vcpu:
            return "vcpu"
        if sum(m.memory_gib for m in holding) + memory > self.limits.max_memory_gib:
            return "memory_gib"
        return None


# GPUs are always scarce (three, so a few launches fill them and starts must wait their turn); at most one
# other limit is tight. With every limit random, nearly every launch would be refused.
ROOMY = Limits(max_gpus=3, max_instances=6, max_vcpu=1000, max_memory_gib=100_000, h100=None)
limits_strategy = st.one_of(
    st.just(ROOMY),
    st.builds(lambda n: replace(ROOMY, max_gpus=n), st.integers(0, 2)),
    st.builds(lambda n: replace(ROOMY, max_instances=n), st.integers(1, 4)),
    st.builds(lambda n: replace(ROOMY, max_vcpu=n), st.sampled_from([0, 30, 60, 100])),
    st.builds(lambda n: replace(ROOMY, max_memory_gib=n), st.sampled_from([16, 300, 500, 1000])),
    st.builds(
        lambda where, n: replace(ROOMY, h100=(where, n)),
        st.sampled_from([None, "us-east-1"]),
        st.integers(0, 3),
    ),
)
index = st.integers(0, 2)  # a few instances, so steps often hit the same one
H100 = ("launch", "gpu-h100x1", "us-east-1")
launch_step = st.tuples(st.just("launch"), st.sampled_from(sorted(TYPES)), st.sampled_from(REGIONS))
act_step = st.tuples(st.just("act"), index, st.sampled_from(list(Action)))
rename_step = st.tuples(st.just("rename"), index, st.sampled_from(NAMES))
observe_step = st.tuples(
    st.just("observe"),
    index,
    st.sampled_from(list(Observation)),
    st.sampled_from([r.value for r in FailureReason]),
)
# The operator moving an instance along: the first report, in the given order, that applies to it.
advance_step = st.tuples(
    st.just("advance"),
    index,
    st.sampled_from(
        [
            (Observation.POD_CREATED, Observation.POD_READY, Observation.POD_GONE),
            (Observation.POD_STARTED, Observation.POD_READY, Observation.POD_GONE),
            (Observation.POD_READY, Observation.POD_GONE),
        ]
    ),
)
reconcile_step = st.tuples(st.just("reconcile"), index)
# Weighted towards launches and operator reports, which move instances along.
steps_strategy = st.lists(
    st.one_of(
        launch_step,
        launch_step,
        act_step,
        act_step,
        act_step,
        advance_step,
        advance_step,
        advance_step,
        observe_step,
        rename_step,
        reconcile_step,
    ),
    min_size=5,
    max_size=40,
)


def _snapshot(tenant: Any) -> tuple[list[dict[str, Any]], int, int]:
    rows = list(Instance.objects.filter(tenant=tenant).order_by("pk").values())
    events = InstanceEvent.objects.filter(instance__tenant=tenant).count()
    audits = AuditEvent.objects.filter(tenant=tenant).count()
    return rows, events, audits


class Runner:
    def __init__(self, catalog: Catalog, limits: Limits) -> None:
        self.tenant = TenantFactory()
        self.user = UserFactory()
        MembershipFactory(tenant=self.tenant, user=self.user, role=Role.OWNER)
        TenantQuota.objects.create(
            tenant=self.tenant,
            max_gpus=limits.max_gpus,
            max_instances=limits.max_instances,
            max_vcpu=limits.max_vcpu,
            max_memory_gib=limits.max_memory_gib,
            max_volume_gib=100,
            max_object_storage_gib=100,
        )
        if limits.h100 is not None:
            where, limit = limits.h100
            GpuQuota.objects.create(
                tenant=self.tenant,
                gpu_type=GpuType.objects.get(slug="h100-80gb"),
                region=Region.objects.get(slug=where) if where else None,
                max_gpus=limit,
            )
        self.world = World(limits=limits)
        self.ever_terminated: set[Any] = set()

    def name_taken(self, name: str, besides: Model | None = None) -> bool:
        """Names are unique among the tenant's instances that are not terminated."""
        return any(
            m.name == name and m.state != State.TERMINATED and m is not besides for m in self.world.instances
        )

    # --- steps ----------------------------------------------------------------------------------------

    def launch(self, type_slug: str, region: str) -> None:
        name = f"n{self.world.launched}"
        refused = self.world.refusal(type_slug, region, new_instance=True)
        req = services.LaunchRequest(instance_type=type_slug, region=region, image="pytorch", name=name)
        if refused is not None:
            with pytest.raises(DomainError) as exc:
                self._unchanged(
                    lambda: services.instance_launch(actor=self.user, tenant=self.tenant, req=req)
                )
            assert exc.value.code == "quota_exceeded"
            assert exc.value.details["resource"] == refused
            event(f"launch refused: {refused}")
            return
        if self.name_taken(name):
            with pytest.raises(DomainError) as exc:
                self._unchanged(
                    lambda: services.instance_launch(actor=self.user, tenant=self.tenant, req=req)
                )
            assert exc.value.code == "invalid"
            assert "name" in exc.value.fields
            event("launch refused: name taken")
            return
        instance = services.instance_launch(actor=self.user, tenant=self.tenant, req=req)
        self.world.launched += 1
        self.world.audits += 1
        self.world.instances.append(Model(pk=instance.pk, type_slug=type_slug, region=region, name=name))
        event("launch admitted")

    def act(self, model: Model, action: Action) -> None:
        try:
            new_state = after_action(model.state, action)
        except InvalidTransition:
            expected_code: str | None = "invalid_state"
        else:
            expected_code = None
            if action == Action.START:
                refused = self.world.refusal(model.type_slug, model.region, new_instance=False)
                expected_code = "quota_exceeded" if refused else None
        instance = Instance.objects.get(pk=model.pk)
        if expected_code is not None:
            with pytest.raises(DomainError) as exc:
                self._unchanged(
                    lambda: services.instance_act(actor=self.user, instance=instance, action=action)
                )
            assert exc.value.code == expected_code
            if expected_code == "invalid_state":
                assert exc.value.details["state"] == model.state
            return
        services.instance_act(actor=self.user, instance=instance, action=action)
        if action in (Action.STOP, Action.TERMINATE, Action.RESTART):
            model.billed = False
        if action == Action.TERMINATE and model.state in (State.STOPPED, State.FAILED):
            model.idle_terminating = True
            event("terminated while idle")
        model.state, model.desired = new_state, desired_after(action)
        model.generation += 1
        model.events += 1
        self.world.audits += 1

    def rename(self, model: Model, name: str) -> None:
        instance = Instance.objects.get(pk=model.pk)
        taken = self.name_taken(name, besides=model)
        if model.state == State.TERMINATED or taken:
            with pytest.raises(DomainError) as exc:
                self._unchanged(
                    lambda: services.instance_rename(actor=self.user, instance=instance, name=name)
                )
            assert exc.value.code == ("invalid_state" if model.state == State.TERMINATED else "invalid")
            if taken and model.state != State.TERMINATED:
                assert "name" in exc.value.fields
            return
        services.instance_rename(actor=self.user, instance=instance, name=name)
        if name != model.name:
            model.name = name
            self.world.audits += 1

    def observe(self, model: Model, observation: Observation, reason: str) -> None:
        starts_billing = (
            observation in (Observation.POD_STARTED, Observation.POD_READY)
            and model.state in STARTS_BILLING
            and not model.billed
        )
        new_state = after_observation(model.state, observation) or (model.state if starts_billing else None)
        call = lambda: services.instance_observe(  # noqa: E731
            instance_id=model.pk, observation=observation, reason=reason, message="seen"
        )
        if new_state is None:
            assert self._unchanged(call) is None
            return
        assert call() is not None
        model.state = new_state
        model.events += 2 if starts_billing and observation == Observation.POD_READY else 1
        if starts_billing:
            model.billed = True
        if new_state in (State.STOPPED, State.TERMINATED, State.FAILED):
            model.billed = False

    def advance(self, model: Model, order: tuple[Observation, ...]) -> None:
        for observation in order:
            if after_observation(model.state, observation) is not None:
                self.observe(model, observation, "")
                return

    def reconcile(self, model: Model) -> None:
        reconcile_instances.reconcile_instance(model.pk)
        if model.state in (State.STOPPING, State.TERMINATING):  # no cluster: the pod is gone at once
            new_state = after_observation(model.state, Observation.POD_GONE)
            assert new_state is not None
            model.state = new_state
            model.events += 1

    def step(self, step: tuple[Any, ...]) -> None:
        kind, *args = step
        if kind == "launch":
            self.launch(*args)
            return
        if not self.world.instances:
            return
        model = self.world.instances[args[0] % len(self.world.instances)]
        getattr(self, kind)(model, *args[1:])

    # --- checks ---------------------------------------------------------------------------------------

    def _unchanged(self, call: Any) -> Any:
        """Run a call that should change nothing (or raise); check that it did not."""
        before = _snapshot(self.tenant)
        try:
            return call()
        finally:
            assert _snapshot(self.tenant) == before

    def check(self) -> None:
        rows = {row.pk: row for row in Instance.objects.filter(tenant=self.tenant)}
        assert set(rows) == {m.pk for m in self.world.instances}
        for model in self.world.instances:
            row = rows[model.pk]
            event(f"reached {row.state}")  # shown by --hypothesis-show-statistics
            assert State(row.state) == model.state
            assert row.desired_state == model.desired
            assert row.generation == model.generation
            assert row.name == model.name
            assert (row.billing_since is not None) == model.billed
            events = list(InstanceEvent.objects.filter(instance=row).order_by("created_at", "id"))
            assert len(events) == model.events
            assert events[-1].to_state == row.state
            for earlier, later in itertools.pairwise(events):
                assert later.from_state == earlier.to_state  # an unbroken chain of transitions
            if row.state == State.FAILED:
                assert row.failure_reason in {r.value for r in FailureReason}
            if model.pk in self.ever_terminated:
                assert row.state == State.TERMINATED
            if row.state == State.TERMINATED:
                self.ever_terminated.add(model.pk)
                assert row.terminated_at is not None

        model_of = {m.pk: m for m in self.world.instances}
        holding = [
            row
            for row in rows.values()
            if row.state in HOLDS_COMPUTE and not model_of[row.pk].idle_terminating
        ]
        # Usage is exactly what the instances holding compute hold: those in HOLDS_COMPUTE, except a
        # stopped or failed instance being terminated, which had nothing to give back.
        usage = usage_of(self.tenant)
        assert usage.gpus == sum(row.gpu_count for row in holding)
        assert usage.vcpu == sum(row.vcpu for row in holding)
        assert usage.memory_gib == sum(row.memory_gib for row in holding)
        assert usage.instances == sum(row.state in LIVE for row in rows.values())
        h100 = GpuType.objects.get(slug="h100-80gb")
        h100_limit = self.world.limits.h100
        h100_region = None
        if h100_limit is not None and h100_limit[0] is not None:
            h100_region = Region.objects.get(slug=h100_limit[0]).pk
        assert usage.gpus_of_type(h100.pk, h100_region) == sum(
            row.gpu_count
            for row in holding
            if row.gpu_type_id == h100.pk and h100_region in (None, row.region_id)
        )
        # ... and never more than the limits.
        admitted = holding
        limits = self.world.limits
        assert sum(row.gpu_count for row in admitted) <= limits.max_gpus
        assert sum(row.vcpu for row in admitted) <= limits.max_vcpu
        assert sum(row.memory_gib for row in admitted) <= limits.max_memory_gib
        assert usage.instances <= limits.max_instances
        if h100_limit is not None:
            assert (
                sum(
                    row.gpu_count
                    for row in admitted
                    if row.gpu_type_id == h100.pk and h100_region in (None, row.region_id)
                )
                <= h100_limit[1]
            )
        assert AuditEvent.objects.filter(tenant=self.tenant).count() == self.world.audits


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(limits=limits_strategy, first=launch_step, steps=steps_strategy)
# Sequences too specific for random search to hit often, always run as well.
@example(  # a stopped instance cannot start while others hold its GPUs; it can once they are gone
    limits=replace(ROOMY, max_gpus=1),
    first=H100,
    steps=[
        ("act", 0, Action.STOP),
        ("reconcile", 0),
        H100,
        ("act", 0, Action.START),
        ("act", 1, Action.TERMINATE),
        ("act", 0, Action.START),
        ("reconcile", 1),
        ("act", 0, Action.START),
        ("advance", 0, (Observation.POD_READY,)),
        ("act", 0, Action.RESTART),
    ],
)
@example(  # a failed instance holds nothing and must be admitted again to start
    limits=replace(ROOMY, h100=("us-east-1", 1)),
    first=H100,
    steps=[
        ("observe", 0, Observation.FAILED, "crash_loop"),
        ("launch", "gpu-h100x1", "eu-west-1"),
        H100,
        ("act", 0, Action.START),
        ("act", 0, Action.TERMINATE),
        ("observe", 0, Observation.FAILED, "internal"),
        ("advance", 0, (Observation.POD_GONE,)),
        ("act", 0, Action.START),
    ],
)
@example(  # names are unique among instances that are not terminated
    limits=ROOMY,
    first=("launch", "cpu-4x", "us-east-1"),
    steps=[
        ("rename", 0, "alpha"),
        ("launch", "cpu-4x", "us-east-1"),
        ("rename", 1, "alpha"),
        ("rename", 0, "n1"),
        ("act", 0, Action.TERMINATE),
        ("reconcile", 0),
        ("rename", 1, "alpha"),
        ("rename", 0, "beta"),
    ],
)
def test_random_lifecycles_keep_states_valid_and_quota_exact(
    catalog: Catalog, limits: Limits, first: tuple[Any, ...], steps: list[tuple[Any, ...]]
) -> None:
    with transaction.atomic():  # each example starts from the same database
        runner = Runner(catalog, limits)
        for step in [first, *steps]:
            runner.step(step)
            runner.check()
        transaction.set_rollback(True)
