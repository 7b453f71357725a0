"""Quotas: limits against usage, asking staff for more and the form's errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType
from apps.quotas.models import GpuQuota, QuotaRequest
from apps.tenants.roles import Role
from tests.console.account.helpers import MakeActor, browser, has_csrf, html, page_url
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db


def test_quotas_show_limits_against_usage_with_progress_bars(make_actor: MakeActor) -> None:
    seed()
    viewer = make_actor(Role.VIEWER)
    h100 = GpuType.objects.get(slug="h100-80gb")
    GpuQuota.objects.create(tenant=viewer.tenant, gpu_type=h100, max_gpus=4)
    QuotaRequest.objects.create(
        tenant=viewer.tenant, requested_by=viewer.user, resource="gpus", amount=64, reason="Training a model"
    )

    response = browser(viewer).get(page_url("quotas", viewer))

    page = html(response)
    assert response.status_code == 200
    assert "0 of 8" in page  # the default GPU limit
    assert re.search(
        r'<progress id="quota-gpus" max="100" value="0" aria-label="GPUs \(all types\): 0 of 8', page
    )
    assert h100.slug in page and "0 of 4" in page
    assert "Training a model" in page and "pending" in page
    assert "Ask for more" not in page  # a viewer may not ask


def test_an_admin_asks_for_more_quota(make_actor: MakeActor, django_capture_on_commit_callbacks: Any) -> None:
    seed()
    admin = make_actor(Role.ADMIN)
    h100 = GpuType.objects.get(slug="h100-80gb")
    client = browser(admin)
    form_page = client.get(page_url("quotas", admin))
    assert "Ask for more" in html(form_page) and has_csrf(form_page)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            page_url("quotas", admin),
            {
                "resource": "gpu_type",
                "gpu_type": h100.slug,
                "region": "us-east-1",
                "amount": "16",
                "reason": "Training a 70B model",
            },
        )

    assert response.status_code == 302
    request = QuotaRequest.objects.get(tenant=admin.tenant)
    assert (request.resource, request.gpu_type, request.region.slug, request.amount) == (
        "gpu_type",
        h100,
        "us-east-1",
        16,
    )
    assert AuditEvent.objects.filter(action="quota_request.create", tenant=admin.tenant).exists()


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"resource": "gpus", "amount": "16", "reason": "short"}, 400, "at least 10 characters"),
        (
            {"resource": "gpus", "amount": "0", "reason": "A long enough reason"},
            400,
            "greater than or equal to 1",
        ),
        ({"resource": "gpus", "amount": "lots", "reason": "A long enough reason"}, 400, "A valid integer"),
        (
            {"resource": "gpu_type", "amount": "4", "reason": "A long enough reason"},
            400,
            "Name the GPU type.",
        ),
        (
            {"resource": "disks", "amount": "4", "reason": "A long enough reason"},
            400,
            "is not a valid choice",
        ),
        (
            {"resource": "gpu_type", "gpu_type": "nope", "amount": "4", "reason": "A long enough reason"},
            400,
            "nope",
        ),
    ],
)
def test_quota_request_form_errors(
    make_actor: MakeActor, form: dict[str, str], status: int, message: str
) -> None:
    admin = make_actor(Role.ADMIN)
    response = browser(admin).post(page_url("quotas", admin), form)
    assert response.status_code == status
    assert message in html(response)
    assert not QuotaRequest.objects.exists()


def test_a_second_pending_request_for_the_same_resource_is_refused(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    client = browser(admin)
    form = {"resource": "gpus", "amount": "16", "reason": "A long enough reason"}
    assert client.post(page_url("quotas", admin), form).status_code == 302
    response = client.post(page_url("quotas", admin), form)
    assert response.status_code == 409
    assert "already pending" in html(response)


def test_a_member_may_read_quotas_but_not_ask(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    client = browser(member)
    assert client.get(page_url("quotas", member)).status_code == 200
    response = client.post(
        page_url("quotas", member), {"resource": "gpus", "amount": "16", "reason": "x" * 12}
    )
    assert response.status_code == 403
    assert "quota.manage" in html(response)
    assert not QuotaRequest.objects.exists()
