"""Data for the benchmarks: the catalog, connected regions, tenants with tokens, bulk rows by COPY."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import connection, models
from django.utils import timezone

from apps.instances.states import HOLDS_COMPUTE
from bench.common import REPO

FLEET = REPO / "sandbox" / "fleet.yaml"
CREDIT = Decimal("100000000.00")
BIG_QUOTA = {
    "max_gpus": 100000,
    "max_instances": 100000,
    "max_vcpu": 1000000,
    "max_memory_gib": 10000000,
    "max_volume_gib": 1000000,
    "max_object_storage_gib": 1000000,
}


@dataclass
class BenchTenant:
    tenant: Any
    user: Any
    token: str

    @property
    def slug(self) -> str:
        return str(self.tenant.slug)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def catalog(fleet: Path = FLEET) -> list[str]:
    from apps.catalog.catalog_seed import seed_catalog

    return seed_catalog(fleet)


def connect_region(slug: str, kubeconfig_path: Path) -> Any:
    """The catalog region `slug` gets the cluster of this kubeconfig (stored encrypted, as in production)."""
    from apps.catalog.models import Region
    from apps.operator.client import kubeconfig_from_file

    region = Region.objects.get(slug=slug)
    region.set_kubeconfig(kubeconfig_from_file(str(kubeconfig_path)))
    region.save()
    return region


def tenant(slug: str, *, quota: dict[str, int] | None = None) -> BenchTenant:
    """A tenant with an owner, a full-scope API token, a large prepaid credit and the given quota."""
    from apps.accounts import scopes, token_secrets
    from apps.accounts.models import ApiToken, User
    from apps.billing.models import CreditGrant
    from apps.quotas.models import TenantQuota
    from apps.tenants.models import Membership, Tenant
    from apps.tenants.roles import Role

    user = User.objects.create(email=f"owner@{slug}.bench.invalid", email_verified_at=timezone.now())
    row = Tenant.objects.create(name=slug, slug=slug, created_by=user)
    Membership.objects.create(tenant=row, user=user, role=Role.OWNER)
    CreditGrant.objects.create(tenant=row, kind="promotional", amount=CREDIT, reason="benchmark")
    # A partial quota limits what it names; every other limit is large (no column is left empty).
    TenantQuota.objects.update_or_create(tenant=row, defaults={**BIG_QUOTA, **(quota or {})})
    secret = token_secrets.generate()
    ApiToken.objects.create(
        user=user,
        tenant=row,
        name="bench",
        prefix=secret.prefix,
        secret_hash=secret.digest,
        scopes=list(scopes.ALL_SCOPES),
    )
    return BenchTenant(row, user, secret.plaintext)


def _text(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def copy_rows(
    model: type[models.Model], rows: Iterable[dict[str, Any]], *, tick: Callable[[int], None] | None = None
) -> int:
    """COPY rows into the model's table: every concrete column, the model's defaults for those a row omits
    (so columns other issues add keep working). Far faster than bulk_create for 10^5-10^6 rows."""
    fields = list(model._meta.concrete_fields)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    defaults: dict[str, Any] = {}
    for f in fields:
        if f.has_default():
            default = f.get_default()
            if not callable(default):
                defaults[f.attname] = default
        elif f.null:
            defaults[f.attname] = None
        elif isinstance(f, models.CharField | models.TextField):
            defaults[f.attname] = ""
    attnames = [f.attname for f in fields]
    count = 0
    raw = connection.connection  # the psycopg connection under Django's
    with raw.cursor() as cursor, cursor.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            merged = {**defaults, **row}
            copy.write_row([_text(merged[name]) for name in attnames])
            count += 1
            if tick is not None:
                tick(count)
    return count


def instance_rows(
    *,
    tenant: Any,
    count: int,
    region: Any,
    instance_type: Any,
    created_by: Any,
    states: Sequence[str] = ("running",),
    start: int = 0,
    desired: str = "running",
) -> Iterable[dict[str, Any]]:
    """Instance rows as a launch would have frozen them (resources and price of the type)."""
    from apps.instances.models import frozen_terms

    now = timezone.now()
    terms = frozen_terms(instance_type)  # no query: the rows are generated while COPY holds the connection
    for i in range(start, start + count):
        state = states[i % len(states)]
        yield {
            "id": uuid.uuid4(),
            "tenant_id": tenant.pk,
            "name": f"bench-{i}",
            "region_id": region.pk,
            "instance_type_id": instance_type.pk,
            **terms,
            "image_reference": "nvcr.io/nvidia/pytorch:24.08-py3",
            "env": {},
            "command": [],
            "desired_state": desired,
            "state": state,
            "holds_compute": state in HOLDS_COMPUTE,
            "generation": 1,
            "connection": {},
            "created_by_id": created_by.pk,
            "created_at": now - timedelta(seconds=i),
            "updated_at": now,
            "running_since": now if state == "running" else None,
            "accrued_running_seconds": 0,
        }
