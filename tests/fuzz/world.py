"""The objects the fuzzer's path parameters point at: one tenant whose owner's full-scope token signs every
request, with one of everything the API can address by id, plus a verified staff session for /staff/."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from django.test import Client

from apps.accounts import services as account_services
from apps.accounts.models import User
from apps.quotas import services as quota_services
from apps.quotas.models import QuotaResource
from apps.storage import services as volume_services
from apps.storage.objects import services as object_services
from apps.tenants import services as tenant_services
from apps.tenants.roles import Role
from tests.billing.invoices.helpers import make_invoice
from tests.conftest import Actor, login_staff
from tests.factories import MembershipFactory, UserFactory, make_token
from tests.instances.cluster_helpers import cluster_row
from tests.instances.helpers import Catalog, ed25519_public_key, instance_row


@dataclass
class World:
    owner: Actor
    staff_cookies: dict[str, str]
    # path parameter name -> the real values it may take (the fuzzer also sends random ones)
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def token_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner.token_plaintext}"}

    @property
    def staff_headers(self) -> dict[str, str]:
        # SessionAuthentication wants the CSRF cookie's value echoed back on unsafe methods.
        return {"X-CSRFToken": self.staff_cookies["csrftoken"]}


def _staff_cookies(staff: User) -> dict[str, str]:
    client = login_staff(Client(), staff)
    csrf = secrets.token_hex(16)  # 32 characters: Django accepts the unmasked secret in the header
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}


def build(*, catalog: Catalog, owner: Actor, staff: User) -> World:
    tenant, user = owner.tenant, owner.user
    viewer = MembershipFactory(tenant=tenant, user=UserFactory(), role=Role.VIEWER)
    other_token, _ = make_token(user=user, tenant=tenant, name="fuzz target")
    key = account_services.ssh_key_create(
        actor=user, tenant=tenant, name="laptop", public_key=ed25519_public_key()
    )
    h100 = catalog.instance_type("gpu-h100x1")
    running = instance_row(
        tenant=tenant, instance_type=h100, region=catalog.us_east, created_by=user, name="fuzz-running"
    )
    stopped = instance_row(
        tenant=tenant,
        instance_type=h100,
        region=catalog.us_east,
        created_by=user,
        name="fuzz-stopped",
        state="stopped",
    )
    cluster = cluster_row(tenant=tenant, created_by=user, name="fuzz-cluster")
    volume = volume_services.volume_create(
        actor=user, tenant=tenant, name="data", size_gib=10, region="us-east-1"
    )
    invitation, _ = tenant_services.invitation_create(
        actor=user, actor_role=Role.OWNER, tenant=tenant, email="invitee@example.com", role=Role.MEMBER
    )
    quota_request = quota_services.quota_request_create(
        actor=user, tenant=tenant, resource=QuotaResource.GPUS, amount=16, reason="fuzzing"
    )
    invoice = make_invoice(tenant)
    bucket = object_services.bucket_create(actor=user, tenant=tenant, name="fuzz-data")
    access_key = object_services.access_key_create(actor=user, tenant=tenant, name="fuzz")
    ids = {
        "tenant_slug": [tenant.slug],
        "staff_tenant_slug": [tenant.slug],
        "member_id": [str(viewer.pk)],
        "token_id": [str(other_token.pk)],
        "ssh_key_id": [str(key.pk)],
        "instance_id": [str(running.pk), str(stopped.pk)],
        "cluster_id": [str(cluster.pk)],
        "volume_id": [str(volume.pk)],
        "invitation_id": [str(invitation.pk)],
        "quota_request_id": [str(quota_request.pk)],
        "invoice_id": [str(invoice.pk)],
        "bucket_name": [bucket.name],
        "access_key_id": [str(access_key.key.pk)],
    }
    return World(owner=owner, staff_cookies=_staff_cookies(staff), ids=ids)


# The world of the running test, for the schema hooks (they run inside Hypothesis, without fixtures).
CURRENT: World | None = None
