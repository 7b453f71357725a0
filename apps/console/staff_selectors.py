"""Reads for the staff console: every tenant, instance and quota request, across tenants.

Only staff pages call these (apps/console/views/staff*.py check is_staff first). Lists are annotated in SQL
and wallets come from `apps.billing.selectors.wallets_of`, so a page costs the same few queries whether it
shows 3 tenants or 30.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.billing.models import CreditGrant
from apps.billing.selectors import Wallet, wallets_of
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import State
from apps.quotas.models import QuotaRequest, QuotaRequestStatus
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role


@dataclass(frozen=True)
class TenantRow:
    """One tenant with the figures staff look at first."""

    tenant: Tenant
    owner_email: str | None
    members: int
    running: int
    gpus: int
    wallet: Wallet


def _per_tenant(queryset: QuerySet[Any], aggregate: Any) -> Coalesce:
    """A correlated subquery giving `aggregate` over `queryset`'s rows of the outer tenant (0 when none):
    one SQL statement for the whole list, and no join that would multiply the other counts."""
    rows = queryset.filter(tenant=OuterRef("pk")).order_by().values("tenant").annotate(n=aggregate)
    return Coalesce(Subquery(rows.values("n")[:1], output_field=IntegerField()), Value(0))


def _owners() -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=OuterRef("pk"), role=Role.OWNER)


def tenants_for_staff(*, status: str = "", search: str = "") -> QuerySet[Tenant]:
    """Tenants with members, running instances, GPUs held and the first owner's email; filtered by status
    and by a search term matched against the name, the slug and every owner's email."""
    tenants = Tenant.objects.annotate(
        owner_email=Subquery(_owners().order_by("created_at", "pk").values("user__email")[:1]),
        member_count=_per_tenant(Membership.objects.all(), Count("pk")),
        running_count=_per_tenant(Instance.objects.filter(state=State.RUNNING), Count("pk")),
        gpus_in_use=_per_tenant(Instance.objects.filter(holds_compute=True), Sum("gpu_count")),
    )
    if status:
        tenants = tenants.filter(status=status)
    search = search.strip()
    if search:
        tenants = tenants.filter(
            Q(name__icontains=search)
            | Q(slug__icontains=search)
            | Exists(_owners().filter(user__email__icontains=search))
        )
    return tenants.order_by("slug")


def tenant_rows(tenants: Sequence[Tenant], now: datetime | None = None) -> list[TenantRow]:
    """Rows for tenants from `tenants_for_staff`, with their wallets (balance, spend this month)."""
    wallets = wallets_of(tenants, now or timezone.now())
    return [
        TenantRow(
            tenant=t,
            owner_email=getattr(t, "owner_email", None),
            members=getattr(t, "member_count", 0),
            running=getattr(t, "running_count", 0),
            gpus=getattr(t, "gpus_in_use", 0),
            wallet=wallets[t.pk],
        )
        for t in tenants
    ]


def tenant_row(*, slug: str) -> TenantRow | None:
    tenant = tenants_for_staff().filter(slug=slug).first()
    return tenant_rows([tenant])[0] if tenant is not None else None


def instances_for_staff(*, state: str = "", region: str = "", tenant: str = "") -> QuerySet[Instance]:
    """Instances of every tenant, newest first, with `since`: when the instance entered its current state.
    State "" means every state but terminated, "all" every state."""
    entered = (
        InstanceEvent.objects.filter(instance=OuterRef("pk"), to_state=OuterRef("state"))
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    instances = Instance.objects.select_related("tenant", "region", "instance_type").annotate(
        since=Coalesce(Subquery(entered), "created_at")
    )
    if state == "all":
        pass
    elif state:
        instances = instances.filter(state=state)
    else:
        instances = instances.exclude(state=State.TERMINATED)
    if region:
        instances = instances.filter(region__slug=region)
    if tenant:
        instances = instances.filter(tenant__slug=tenant)
    return instances.order_by("-created_at", "pk")


def recent_instances_of(*, tenant: Tenant, limit: int = 10) -> list[Instance]:
    return list(instances_for_staff(tenant=tenant.slug, state="all")[:limit])


def recent_credit_grants_of(*, tenant: Tenant, limit: int = 10) -> list[CreditGrant]:
    return list(
        CreditGrant.objects.filter(tenant=tenant)
        .select_related("created_by")
        .order_by("-created_at", "pk")[:limit]
    )


def quota_requests_for_staff(*, status: str = "") -> QuerySet[QuotaRequest]:
    """Quota requests of every tenant: pending ones first, oldest first (a queue), then the decided ones,
    newest first."""
    pending = Q(status=QuotaRequestStatus.PENDING)
    requests = QuotaRequest.objects.select_related(
        "tenant", "requested_by", "decided_by", "gpu_type", "region"
    ).annotate(
        rank=Case(When(pending, then=Value(0)), default=Value(1), output_field=IntegerField()),
        queued_at=Case(When(pending, then=F("created_at")), default=None, output_field=DateTimeField()),
    )
    if status:
        requests = requests.filter(status=status)
    return requests.order_by("rank", "queued_at", "-created_at", "pk")
