"""Quotas and quota requests through the API, and their approval or denial in the admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from apps.accounts import scopes
from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType
from apps.core.errors import Conflict
from apps.instances import services as instance_services
from apps.instances.models import Instance
from apps.instances.states import Action, Observation
from apps.quotas import services
from apps.quotas.models import GpuQuota, QuotaRequest
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff
from tests.factories import UserFactory
from tests.instances.helpers import launch_body
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db

REASON = "Training a 70B model next week."


def limits_of(response: Any) -> dict[str, tuple[int, int]]:
    return {item["resource"]: (item["limit"], item["used"]) for item in response.json()["limits"]}


def launch(actor: Actor, **overrides: Any) -> Any:
    return actor.token_client().post(actor.url("/instances"), launch_body(**overrides), format="json")


def ask(actor: Actor, **body: Any) -> Any:
    payload = {"resource": "gpus", "amount": 16, "reason": REASON, **body}
    return actor.token_client().post(
        actor.url("/quota-requests"), {k: v for k, v in payload.items() if v is not None}, format="json"
    )


@pytest.fixture
def staff_client() -> Client:
    return login_staff(Client(), UserFactory(is_staff=True, is_superuser=True))


def admin_action(client: Client, action: str, *requests: QuotaRequest) -> Any:
    return client.post(
        "/admin/quotas/quotarequest/",
        {"action": action, "_selected_action": [str(r.pk) for r in requests]},
        follow=True,
    )


# --- GET /quotas --------------------------------------------------------------------------------------


def test_a_new_tenant_sees_the_default_limits_and_no_usage(owner: Actor) -> None:
    response = owner.token_client().get(owner.url("/quotas"))

    assert response.status_code == 200
    defaults = settings.DEFAULT_TENANT_QUOTA
    assert limits_of(response) == {
        "instances": (defaults["max_instances"], 0),
        "gpus": (defaults["max_gpus"], 0),
        "vcpu": (defaults["max_vcpu"], 0),
        "memory_gib": (defaults["max_memory_gib"], 0),
        "volume_gib": (defaults["max_volume_gib"], 0),
        "object_storage_gib": (defaults["max_object_storage_gib"], 0),
    }
    assert response.json()["gpu_types"] == []


def test_usage_follows_launches_stops_and_terminations(owner: Actor, catalog: Any) -> None:
    set_quota(owner.tenant, max_gpus=8, max_instances=10, max_vcpu=200, max_memory_gib=2000)
    GpuQuota.objects.create(tenant=owner.tenant, gpu_type=GpuType.objects.get(slug="h100-80gb"), max_gpus=6)
    GpuQuota.objects.create(
        tenant=owner.tenant,
        gpu_type=GpuType.objects.get(slug="h100-80gb"),
        region=catalog.eu_west,
        max_gpus=2,
    )
    first = launch(owner, instance_type="gpu-h100x2")
    second = launch(owner, instance_type="gpu-h100x1", region="eu-west-1")
    launch(owner, instance_type="cpu-4x")
    assert first.status_code == second.status_code == 201

    response = owner.token_client().get(owner.url("/quotas"))

    assert limits_of(response) == {
        "instances": (10, 3),
        "gpus": (8, 3),
        "vcpu": (200, 48 + 24 + 4),
        "memory_gib": (2000, 440 + 220 + 16),
        "volume_gib": (1000, 0),
        "object_storage_gib": (1000, 0),
    }
    assert response.json()["gpu_types"] == [
        {"gpu_type": "h100-80gb", "region": None, "limit": 6, "used": 3},
        {"gpu_type": "h100-80gb", "region": "eu-west-1", "limit": 2, "used": 1},
    ]

    # A stopped instance still counts as an instance but holds no GPUs; a terminated one counts for nothing.
    instance = Instance.objects.get(pk=first.json()["id"])
    instance_services.instance_act(actor=owner.user, instance=instance, action=Action.STOP)
    instance_services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)
    other = Instance.objects.get(pk=second.json()["id"])
    instance_services.instance_act(actor=owner.user, instance=other, action=Action.TERMINATE)
    instance_services.instance_observe(instance_id=other.pk, observation=Observation.POD_GONE)

    response = owner.token_client().get(owner.url("/quotas"))

    assert limits_of(response)["instances"] == (10, 2)
    assert limits_of(response)["gpus"] == (8, 0)
    assert [item["used"] for item in response.json()["gpu_types"]] == [0, 0]


@pytest.mark.parametrize("role", list(Role))
def test_every_member_may_read_the_quota(make_actor: Callable[..., Actor], role: Role) -> None:
    actor = make_actor(role, token_scopes=(scopes.TENANT_READ,))

    assert actor.token_client().get(actor.url("/quotas")).status_code == 200
    assert actor.session_client().get(actor.url("/quotas")).status_code == 200


def test_reading_the_quota_needs_the_tenant_read_scope(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=(scopes.INSTANCES_READ,))

    response = actor.token_client().get(actor.url("/quotas"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"


def test_another_tenants_quota_is_not_found(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)

    response = stranger.session_client().get(owner.url("/quotas"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- quota requests: who may ask ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_ask_for_more(
    make_actor: Callable[..., Actor], role: Role, django_capture_on_commit_callbacks: Any
) -> None:
    actor = make_actor(role)
    UserFactory(is_staff=True, email="ops@example.com")
    UserFactory(is_staff=True, is_active=False, email="gone@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        response = ask(actor, amount=32)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["resource"] == "gpus"
    assert body["amount"] == 32
    assert body["status"] == "pending"
    assert body["requested_by"] == actor.user.email
    assert body["gpu_type"] is None and body["region"] is None
    request = QuotaRequest.objects.get(pk=body["id"])
    assert request.tenant == actor.tenant
    audit = AuditEvent.objects.get(action="quota_request.create")
    assert audit.tenant == actor.tenant
    assert audit.target_id == str(request.pk)
    # Active staff hear of it; the limit does not move until they decide.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert actor.tenant.slug in mail.outbox[0].subject
    assert REASON in mail.outbox[0].body
    assert f"/admin/quotas/quotarequest/{request.pk}/change/" in mail.outbox[0].body
    assert services.quota_for(actor.tenant).max_gpus == settings.DEFAULT_TENANT_QUOTA["max_gpus"]


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER, Role.BILLING])
def test_other_roles_may_not_ask(make_actor: Callable[..., Actor], role: Role) -> None:
    actor = make_actor(role)

    response = ask(actor)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_forbidden"
    assert not QuotaRequest.objects.exists()


def test_asking_needs_the_tenant_admin_scope(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=(scopes.TENANT_READ, scopes.INSTANCES_WRITE))

    response = ask(actor)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert ask(make_actor(Role.OWNER, token_scopes=(scopes.TENANT_ADMIN,))).status_code == 201


# --- quota requests: bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource": "tpus"}, "resource"),
        ({"resource": None}, "resource"),
        ({"amount": 0}, "amount"),
        ({"amount": -4}, "amount"),
        ({"amount": 100_001}, "amount"),
        ({"amount": 10**30}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"amount": None}, "amount"),
        ({"reason": "more pls"}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": 1234567890123}, "reason"),
        ({"resource": "gpu_type", "gpu_type": "tpu-v5"}, "gpu_type"),
        ({"resource": "gpu_type"}, "gpu_type"),
        ({"resource": "gpus", "gpu_type": "h100-80gb"}, "gpu_type"),
        ({"resource": "gpu_type", "gpu_type": "h100-80gb", "region": "mars-1"}, "region"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_bad_requests_name_the_field(owner: Actor, catalog: Any, body: dict[str, Any], field: str) -> None:
    response = ask(owner, **body)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert not QuotaRequest.objects.exists()


def test_a_body_that_is_not_an_object_is_refused(owner: Actor) -> None:
    response = owner.token_client().post(owner.url("/quota-requests"), [1, 2], format="json")

    assert response.status_code == 400
    assert "error" in response.json()


def test_a_gpu_type_request_may_name_a_region(owner: Actor, catalog: Any) -> None:
    response = ask(owner, resource="gpu_type", gpu_type="h100-80gb", region="eu-west-1", amount=4)

    assert response.status_code == 201, response.json()
    assert response.json()["gpu_type"] == "h100-80gb"
    assert response.json()["region"] == "eu-west-1"


def test_one_pending_request_per_resource(owner: Actor, catalog: Any) -> None:
    assert ask(owner, amount=16).status_code == 201

    again = ask(owner, amount=24)

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "quota_request_pending"
    # Other resources, and the same GPU type in another region, are separate requests.
    assert ask(owner, resource="vcpu", amount=512).status_code == 201
    assert ask(owner, resource="gpu_type", gpu_type="h100-80gb", amount=8).status_code == 201
    assert (
        ask(owner, resource="gpu_type", gpu_type="h100-80gb", region="us-east-1", amount=8).status_code == 201
    )
    assert ask(owner, resource="gpu_type", gpu_type="h100-80gb", amount=9).status_code == 409
    assert QuotaRequest.objects.filter(tenant=owner.tenant).count() == 4


def test_a_decided_request_no_longer_blocks_a_new_one(owner: Actor) -> None:
    first = ask(owner, amount=16)
    services.quota_request_decide(
        actor=UserFactory(is_staff=True),
        request=QuotaRequest.objects.get(pk=first.json()["id"]),
        approve=False,
    )

    assert ask(owner, amount=12).status_code == 201


# --- quota requests: list and detail --------------------------------------------------------------------


def test_list_and_detail(make_actor: Callable[..., Actor], owner: Actor) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant, token_scopes=(scopes.TENANT_READ,))
    older = ask(owner, resource="instances", amount=20).json()
    newer = ask(owner, resource="vcpu", amount=512).json()
    services.quota_request_decide(
        actor=UserFactory(is_staff=True), request=QuotaRequest.objects.get(pk=older["id"]), approve=False
    )
    client = viewer.token_client()

    listed = client.get(viewer.url("/quota-requests"))
    pending = client.get(viewer.url("/quota-requests?status=pending"))
    detail = client.get(viewer.url(f"/quota-requests/{older['id']}"))

    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["results"]] == [newer["id"], older["id"]]
    assert [item["id"] for item in pending.json()["results"]] == [newer["id"]]
    assert detail.status_code == 200
    assert detail.json()["status"] == "denied"
    assert detail.json()["decided_at"] is not None
    assert detail.json()["reason"] == REASON


def test_another_tenants_requests_are_not_found(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    mine = ask(owner).json()
    stranger = make_actor(Role.OWNER)

    assert stranger.token_client().get(stranger.url("/quota-requests")).json()["results"] == []
    detail = stranger.token_client().get(stranger.url(f"/quota-requests/{mine['id']}"))
    assert detail.status_code == 404
    assert stranger.session_client().get(owner.url(f"/quota-requests/{mine['id']}")).status_code == 404
    missing = owner.token_client().get(owner.url("/quota-requests/00000000-0000-0000-0000-000000000000"))
    assert missing.status_code == 404


# --- deciding in the admin ------------------------------------------------------------------------------


def test_staff_approve_in_the_admin_and_the_limit_moves(
    owner: Actor, staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner, amount=32).json()["id"])

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_action(staff_client, "approve", request)

    assert response.status_code == 200
    assert "Approved 1 request(s)." in response.content.decode()
    request.refresh_from_db()
    assert request.status == "approved"
    assert request.decided_by is not None and request.decided_by.is_staff
    assert request.decided_at is not None
    assert services.quota_for(owner.tenant).max_gpus == 32
    audit = AuditEvent.objects.get(action="quota_request.approve")
    assert audit.tenant == owner.tenant
    assert audit.changes["max_gpus"] == {"from": settings.DEFAULT_TENANT_QUOTA["max_gpus"], "to": 32}
    assert [m.to for m in mail.outbox] == [[owner.user.email]]
    assert "approved" in mail.outbox[0].subject


@pytest.mark.parametrize(
    ("resource", "field", "amount"),
    [
        ("instances", "max_instances", 40),
        ("vcpu", "max_vcpu", 1024),
        ("memory_gib", "max_memory_gib", 8192),
        ("volume_gib", "max_volume_gib", 5000),
    ],
)
def test_approval_sets_each_kind_of_limit(owner: Actor, resource: str, field: str, amount: int) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner, resource=resource, amount=amount).json()["id"])

    services.quota_request_decide(actor=UserFactory(is_staff=True), request=request, approve=True)

    assert getattr(services.quota_for(owner.tenant), field) == amount


def test_approving_a_gpu_type_request_writes_a_gpu_quota(
    owner: Actor, staff_client: Client, catalog: Any
) -> None:
    h100 = GpuType.objects.get(slug="h100-80gb")
    GpuQuota.objects.create(tenant=owner.tenant, gpu_type=h100, region=catalog.us_east, max_gpus=2)
    global_request = QuotaRequest.objects.get(
        pk=ask(owner, resource="gpu_type", gpu_type="h100-80gb", amount=6).json()["id"]
    )
    regional = QuotaRequest.objects.get(
        pk=ask(owner, resource="gpu_type", gpu_type="h100-80gb", region="us-east-1", amount=4).json()["id"]
    )

    admin_action(staff_client, "approve", global_request, regional)

    limits = {
        (q.region.slug if q.region else None): q.max_gpus
        for q in GpuQuota.objects.filter(tenant=owner.tenant, gpu_type=h100)
    }
    assert limits == {None: 6, "us-east-1": 4}
    assert services.quota_for(owner.tenant).max_gpus == settings.DEFAULT_TENANT_QUOTA["max_gpus"]
    changes = [a.changes for a in AuditEvent.objects.filter(action="quota_request.approve").order_by("id")]
    assert {"from": 2, "to": 4} in [value for change in changes for value in change.values()]


def test_staff_deny_and_nothing_moves(
    owner: Actor, staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner, amount=64).json()["id"])

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_action(staff_client, "deny", request)

    assert "Denied 1 request(s)." in response.content.decode()
    request.refresh_from_db()
    assert request.status == "denied"
    assert services.quota_for(owner.tenant).max_gpus == settings.DEFAULT_TENANT_QUOTA["max_gpus"]
    assert AuditEvent.objects.filter(action="quota_request.deny", tenant=owner.tenant).count() == 1
    assert [m.to for m in mail.outbox] == [[owner.user.email]]
    assert "denied" in mail.outbox[0].subject


def test_a_request_is_decided_once(owner: Actor, staff_client: Client) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner, amount=32).json()["id"])
    admin_action(staff_client, "deny", request)

    # The admin skips requests already decided ...
    response = admin_action(staff_client, "approve", request)

    assert "Approved 0 request(s)." in response.content.decode()
    request.refresh_from_db()
    assert request.status == "denied"
    assert services.quota_for(owner.tenant).max_gpus == settings.DEFAULT_TENANT_QUOTA["max_gpus"]
    # ... and the service refuses to decide again.
    with pytest.raises(Conflict) as refused:
        services.quota_request_decide(actor=UserFactory(is_staff=True), request=request, approve=True)
    assert refused.value.code == "quota_request_decided"
    assert refused.value.status_code == 409
    assert AuditEvent.objects.filter(action__startswith="quota_request.").count() == 2  # create, deny


def test_staff_cannot_add_or_edit_requests_in_the_admin(owner: Actor, staff_client: Client) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner).json()["id"])

    assert staff_client.get("/admin/quotas/quotarequest/add/").status_code == 403
    staff_client.post(f"/admin/quotas/quotarequest/{request.pk}/change/", {"amount": 1000})
    request.refresh_from_db()
    assert request.amount == 16


def test_non_staff_cannot_decide(owner: Actor) -> None:
    request = QuotaRequest.objects.get(pk=ask(owner).json()["id"])
    client = Client()
    client.force_login(owner.user)

    response = admin_action(client, "approve", request)

    assert "/admin/login/" in response.redirect_chain[-1][0]
    request.refresh_from_db()
    assert request.status == "pending"


# --- the point of it all --------------------------------------------------------------------------------


def test_an_approved_increase_lets_a_refused_launch_through(
    owner: Actor, staff_client: Client, catalog: Any
) -> None:
    set_quota(owner.tenant, max_gpus=1)
    assert launch(owner).status_code == 201
    refused = launch(owner)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["details"] == {"resource": "gpus", "limit": 1, "used": 1, "requested": 1}

    request = QuotaRequest.objects.get(pk=ask(owner, amount=2).json()["id"])
    admin_action(staff_client, "approve", request)

    assert launch(owner).status_code == 201
    assert limits_of(owner.token_client().get(owner.url("/quotas")))["gpus"] == (2, 2)
    assert launch(owner).status_code == 409


def test_an_approved_gpu_type_increase_lets_a_refused_launch_through(
    owner: Actor, staff_client: Client, catalog: Any
) -> None:
    GpuQuota.objects.create(tenant=owner.tenant, gpu_type=GpuType.objects.get(slug="h100-80gb"), max_gpus=0)
    refused = launch(owner)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["resource"] == "gpu_type:h100-80gb"

    request = QuotaRequest.objects.get(
        pk=ask(owner, resource="gpu_type", gpu_type="h100-80gb", amount=1).json()["id"]
    )
    admin_action(staff_client, "approve", request)

    assert launch(owner).status_code == 201
    assert launch(owner).json()["error"]["code"] == "quota_exceeded"
