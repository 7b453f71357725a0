"""Console account pages under /t/<tenant_slug>/: API tokens, members and invitations, quotas, billing and the
audit log. Each page calls the same services and selectors as the API; these tests go through the Django
test client and check what a person sees: the page, its forms and their errors, the role refusals (403)
and another tenant's objects (404)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.billing.invoices.models import Invoice
from apps.billing.models import BillingAccount, BudgetAlert
from apps.billing.selectors import month_start
from apps.billing.stripe import gateway
from apps.catalog.models import GpuType
from apps.console.views.account import bar_chart
from apps.quotas.models import GpuQuota, QuotaRequest
from apps.tenants import services as tenant_services
from apps.tenants.models import Invitation, Membership, TenantStatus
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import usage
from tests.conftest import Actor
from tests.factories import MembershipFactory, TenantFactory, make_token
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db

MakeActor = Callable[..., Actor]


def browser(actor: Actor) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


def page_url(name: str, actor: Actor, **kwargs: Any) -> str:
    return reverse(f"console:{name}", kwargs={"tenant_slug": actor.tenant.slug, **kwargs})


def html(response: Any) -> str:
    return response.content.decode()


def has_csrf(response: Any) -> bool:
    return 'name="csrfmiddlewaretoken"' in html(response)


# --- every page: sessions, strangers and CSRF ------------------------------------------------------------

PAGES = ["tokens", "members", "quotas", "billing", "audit"]


@pytest.mark.parametrize("name", PAGES)
def test_each_page_needs_a_session(name: str, owner: Actor) -> None:
    response = Client().get(page_url(name, owner))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("name", PAGES)
def test_each_page_of_another_tenant_is_404_and_names_nothing(name: str, make_actor: MakeActor) -> None:
    mine = make_actor(Role.OWNER)
    theirs = make_actor(Role.OWNER)
    theirs.tenant.name = "Secret Rival Labs"
    theirs.tenant.save(update_fields=["name"])

    response = browser(mine).get(page_url(name, theirs))

    assert response.status_code == 404
    assert "Secret Rival Labs" not in html(response)


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_for_the_owner_with_csrf_on_its_forms(name: str, owner: Actor) -> None:
    response = browser(owner).get(page_url(name, owner))
    assert response.status_code == 200
    assert owner.tenant.name in html(response)
    if name != "audit":  # the audit log has only a GET filter form
        assert has_csrf(response)


def test_a_post_without_the_csrf_token_is_refused(owner: Actor) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)
    response = client.post(page_url("tokens", owner), {"name": "ci", "scopes": ["instances:read"]})
    assert response.status_code == 403
    assert not ApiToken.objects.filter(name="ci").exists()


# --- API tokens ------------------------------------------------------------------------------------------


def test_tokens_list_shows_name_prefix_scopes_expiry_last_used_and_revocation(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    used = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    mine, _ = make_token(
        user=member.user,
        tenant=member.tenant,
        name="laptop",
        token_scopes=["instances:write"],
        expires_at=datetime(2030, 1, 2, tzinfo=UTC),
        last_used_at=used,
    )
    gone, _ = make_token(user=member.user, tenant=member.tenant, name="old-ci", revoked_at=timezone.now())
    other, _ = make_token(user=admin.user, tenant=admin.tenant, name="admins-own")

    page = html(browser(member).get(page_url("tokens", member)))

    assert "laptop" in page and mine.prefix in page
    assert "instances:write" in page
    assert "2030-01-02 00:00 UTC" in page
    assert "2026-03-04 05:06 UTC" in page
    assert "old-ci" in page and "revoked" in page
    assert "admins-own" not in page  # a member sees only their own tokens
    assert page_url("token_revoke", member, token_id=mine.pk) in page
    assert page_url("token_revoke", member, token_id=gone.pk) not in page  # nothing left to revoke

    admin_page = html(browser(admin).get(page_url("tokens", admin)))
    assert "admins-own" in admin_page and "laptop" in admin_page and member.user.email in admin_page
    assert other.prefix in admin_page


def test_scope_checkboxes_offer_only_what_the_role_may_grant(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    page = html(browser(viewer).get(page_url("tokens", viewer)))
    offered = set(re.findall(r'name="scopes" value="([^"]+)"', page))
    assert offered == {"tenant:read", "tenant:admin", "instances:read", "storage:read"}

    billing = make_actor(Role.BILLING)
    page = html(browser(billing).get(page_url("tokens", billing)))
    offered = set(re.findall(r'name="scopes" value="([^"]+)"', page))
    assert "billing:write" in offered and "instances:write" not in offered


def test_creating_a_token_shows_the_secret_once_and_it_works(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    client = browser(member)

    response = client.post(
        page_url("tokens", member),
        {"name": "ci", "scopes": ["instances:write"], "expires_at": "2031-05-06"},
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    page = html(response)
    assert page.count(secret) == 1
    assert "shown only on this page" in page
    assert 'id="copy-secret"' in page and "<button" in page
    token = ApiToken.objects.get(name="ci", tenant=member.tenant)
    assert token.user == member.user
    assert token.scopes == ["instances:write"]
    assert token.expires_at == datetime(2031, 5, 6, tzinfo=UTC)
    assert secret not in token.secret_hash
    assert AuditEvent.objects.filter(action="token.create", target_id=str(token.pk)).exists()
    # The secret authenticates against the API...
    me = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert me.status_code == 200
    assert me.json()["token"]["name"] == "ci"
    # ...and is never shown again.
    assert secret not in html(client.get(page_url("tokens", member)))


@pytest.mark.parametrize(
    ("form", "field_message"),
    [
        ({"name": "", "scopes": ["instances:read"]}, "This field may not be blank."),
        ({"name": "ci"}, "at least 1"),
        (
            {"name": "ci", "scopes": ["instances:read"], "expires_at": "tomorrow"},
            "Enter a date as YYYY-MM-DD.",
        ),
        ({"name": "ci", "scopes": ["instances:read"], "expires_at": "2001-01-01"}, "Must be in the future."),
        ({"name": "ci", "scopes": ["billing:write"]}, "cannot grant"),
        ({"name": "x" * 101, "scopes": ["instances:read"]}, "no more than 100 characters"),
    ],
)
def test_token_form_errors_are_shown_and_nothing_is_created(
    make_actor: MakeActor, form: dict[str, Any], field_message: str
) -> None:
    member = make_actor(Role.MEMBER)
    before = ApiToken.objects.count()

    response = browser(member).post(page_url("tokens", member), form)

    assert response.status_code == 400
    page = html(response)
    assert field_message in page
    assert 'role="alert"' in page
    assert ApiToken.objects.count() == before
    assert has_csrf(response)


def test_revoking_a_token_asks_first_then_revokes(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    token, plaintext = make_token(user=member.user, tenant=member.tenant, name="to-go")
    client = browser(member)
    url = page_url("token_revoke", member, token_id=token.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Revoke the token" in html(confirm) and token.prefix in html(confirm)
    assert has_csrf(confirm)
    token.refresh_from_db()
    assert token.revoked_at is None  # a GET changes nothing

    response = client.post(url)

    assert response.status_code == 302
    assert response.url == page_url("tokens", member)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", target_id=str(token.pk)).exists()
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 401
    again = client.post(url)
    assert again.status_code == 409
    assert "already revoked" in html(again)


def test_another_tenants_token_and_a_colleagues_token_are_404(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    colleague = make_actor(Role.ADMIN, tenant=member.tenant)
    stranger = make_actor(Role.OWNER)
    client = browser(member)

    for token in (colleague.token, stranger.token):
        assert client.get(page_url("token_revoke", member, token_id=token.pk)).status_code == 404
        assert client.post(page_url("token_revoke", member, token_id=token.pk)).status_code == 404
        token.refresh_from_db()
        assert token.revoked_at is None


def test_an_admin_revokes_a_members_token(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(page_url("token_revoke", admin, token_id=member.token.pk))
    assert response.status_code == 302
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None


def test_a_suspended_tenant_creates_no_token_but_still_revokes(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    owner.tenant.status, owner.tenant.status_reason = TenantStatus.SUSPENDED, "unpaid invoice"
    owner.tenant.save(update_fields=["status", "status_reason"])
    client = browser(owner)

    refused = client.post(page_url("tokens", owner), {"name": "ci", "scopes": ["instances:read"]})
    assert refused.status_code == 403
    assert "suspended" in html(refused) and "unpaid invoice" in html(refused)
    assert not ApiToken.objects.filter(name="ci").exists()

    assert client.post(page_url("token_revoke", owner, token_id=owner.token.pk)).status_code == 302


# --- members and invitations -----------------------------------------------------------------------------


def test_members_page_lists_members_with_role_controls_for_admins(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    owner = make_actor(Role.OWNER, tenant=admin.tenant)

    response = browser(admin).get(page_url("members", admin))

    page = html(response)
    assert response.status_code == 200
    for actor in (admin, member, owner):
        assert actor.user.email in page
    # An admin changes members (not owners) and grants any role but owner.
    assert page_url("member_role", admin, member_id=member.membership.pk) in page
    assert page_url("member_role", admin, member_id=owner.membership.pk) not in page
    assert f'<label for="role-{member.membership.pk}"' in page
    assert '<option value="owner"' not in page
    assert page_url("member_remove", admin, member_id=member.membership.pk) in page
    assert 'action="' + page_url("invite", admin) + '"' in page


def test_a_viewer_sees_members_but_no_controls_and_no_invitations(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    other = make_actor(Role.MEMBER, tenant=viewer.tenant)
    Invitation.objects.create(
        tenant=viewer.tenant,
        email="pending@example.com",
        role=Role.MEMBER,
        secret_hash="x" * 64,
        invited_by=other.user,
        expires_at=timezone.now() + timedelta(days=1),
    )

    page = html(browser(viewer).get(page_url("members", viewer)))

    assert other.user.email in page
    assert "<select" not in page
    assert "pending@example.com" not in page
    assert page_url("member_remove", viewer, member_id=other.membership.pk) not in page
    assert page_url("member_remove", viewer, member_id=viewer.membership.pk) in page  # leave


def test_changing_a_role_saves_it(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)

    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "viewer"}
    )

    assert response.status_code == 302
    member.membership.refresh_from_db()
    assert member.membership.role == Role.VIEWER
    assert AuditEvent.objects.filter(
        action="member.change_role", target_id=str(member.membership.pk)
    ).exists()


def test_the_last_owner_cannot_be_demoted_and_the_page_says_why(owner: Actor) -> None:
    response = browser(owner).post(
        page_url("member_role", owner, member_id=owner.membership.pk), {"role": "admin"}
    )
    assert response.status_code == 409
    assert "The last owner cannot be demoted" in html(response)
    owner.membership.refresh_from_db()
    assert owner.membership.role == Role.OWNER


def test_an_admin_cannot_make_an_owner_and_the_page_says_why(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "owner"}
    )
    assert response.status_code == 403
    assert "cannot change an &#x27;member&#x27; into &#x27;owner&#x27;" in html(response)
    member.membership.refresh_from_db()
    assert member.membership.role == Role.MEMBER


def test_an_unknown_role_is_a_field_error(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "emperor"}
    )
    assert response.status_code == 400
    assert "is not a valid choice" in html(response)


def test_a_member_may_not_change_roles(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    other = make_actor(Role.VIEWER, tenant=member.tenant)
    response = browser(member).post(
        page_url("member_role", member, member_id=other.membership.pk), {"role": "admin"}
    )
    assert response.status_code == 403
    assert "members.manage" in html(response)
    other.membership.refresh_from_db()
    assert other.membership.role == Role.VIEWER


def test_another_tenants_member_is_404(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    stranger = make_actor(Role.MEMBER)
    client = browser(admin)
    assert (
        client.post(
            page_url("member_role", admin, member_id=stranger.membership.pk), {"role": "viewer"}
        ).status_code
        == 404
    )
    assert client.get(page_url("member_remove", admin, member_id=stranger.membership.pk)).status_code == 404
    assert client.post(page_url("member_remove", admin, member_id=stranger.membership.pk)).status_code == 404
    assert Membership.objects.filter(pk=stranger.membership.pk).exists()


def test_removing_a_member_asks_first_then_removes(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    client = browser(admin)
    url = page_url("member_remove", admin, member_id=member.membership.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert f"Remove {member.user.email}?" in html(confirm)
    assert has_csrf(confirm)

    response = client.post(url)

    assert response.status_code == 302
    assert not Membership.objects.filter(pk=member.membership.pk).exists()
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None


def test_a_viewer_cannot_remove_others_but_may_leave(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    other = make_actor(Role.MEMBER, tenant=viewer.tenant)
    client = browser(viewer)

    assert client.get(page_url("member_remove", viewer, member_id=other.membership.pk)).status_code == 403
    assert client.post(page_url("member_remove", viewer, member_id=other.membership.pk)).status_code == 403
    assert Membership.objects.filter(pk=other.membership.pk).exists()

    leave = client.post(page_url("member_remove", viewer, member_id=viewer.membership.pk))
    assert leave.status_code == 302
    assert leave.url == reverse("console:home")
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()


def test_the_last_owner_cannot_leave(owner: Actor) -> None:
    response = browser(owner).post(page_url("member_remove", owner, member_id=owner.membership.pk))
    assert response.status_code == 409
    assert "The last owner cannot leave" in html(response)
    assert Membership.objects.filter(pk=owner.membership.pk).exists()


def test_inviting_by_email_lists_the_invitation_as_pending(
    make_actor: MakeActor, django_capture_on_commit_callbacks: Any
) -> None:
    admin = make_actor(Role.ADMIN)
    client = browser(admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url("invite", admin), {"email": "Ada@Example.com", "role": "billing"})

    assert response.status_code == 302
    invitation = Invitation.objects.get(tenant=admin.tenant)
    assert (invitation.email, invitation.role, invitation.state) == ("ada@example.com", "billing", "pending")
    page = html(client.get(page_url("members", admin)))
    assert "ada@example.com" in page
    assert page_url("invitation_revoke", admin, invitation_id=invitation.pk) in page


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"email": "not-an-email", "role": "member"}, 400, "Enter a valid email address."),
        ({"email": "", "role": "member"}, 400, "This field may not be blank."),
        ({"email": "ada@example.com", "role": "emperor"}, 400, "is not a valid choice"),
        ({"email": "ada@example.com", "role": "owner"}, 403, "cannot invite an &#x27;owner&#x27;"),
    ],
)
def test_invitation_form_errors(
    make_actor: MakeActor, form: dict[str, str], status: int, message: str
) -> None:
    admin = make_actor(Role.ADMIN)
    response = browser(admin).post(page_url("invite", admin), form)
    assert response.status_code == status
    assert message in html(response)
    assert not Invitation.objects.filter(tenant=admin.tenant).exists()


def test_inviting_an_existing_member_says_so(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(page_url("invite", admin), {"email": member.user.email, "role": "viewer"})
    assert response.status_code == 409
    assert "Already a member of this tenant." in html(response)


def test_a_member_may_not_invite(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    response = browser(member).post(page_url("invite", member), {"email": "x@example.com", "role": "viewer"})
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_revoking_an_invitation_asks_first_and_another_tenants_is_404(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    stranger = make_actor(Role.OWNER)
    mine, _ = tenant_services.invitation_create(
        actor=admin.user,
        actor_role=admin.membership.role,
        tenant=admin.tenant,
        email="a@example.com",
        role="viewer",
    )
    theirs, _ = tenant_services.invitation_create(
        actor=stranger.user, actor_role="owner", tenant=stranger.tenant, email="b@example.com", role="viewer"
    )
    client = browser(admin)
    url = page_url("invitation_revoke", admin, invitation_id=mine.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200 and "a@example.com" in html(confirm) and has_csrf(confirm)
    assert client.post(url).status_code == 302
    mine.refresh_from_db()
    assert mine.state == "revoked"
    pending = html(client.get(page_url("members", admin)))
    assert page_url("invitation_revoke", admin, invitation_id=mine.pk) not in pending  # no longer pending
    again = client.post(url)
    assert again.status_code == 409 and "already revoked" in html(again)

    assert client.post(page_url("invitation_revoke", admin, invitation_id=theirs.pk)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == "pending"


# --- quotas ----------------------------------------------------------------------------------------------


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


# --- billing ---------------------------------------------------------------------------------------------


def test_bar_chart_scales_bars_to_the_largest_value() -> None:
    chart = bar_chart([("a", Decimal("1.00")), ("b", Decimal("4.00")), ("c", Decimal("0"))], bar_width=10)
    heights = [bar.height for bar in chart["bars"]]
    assert heights == [40, 160, 0]
    assert [bar.x for bar in chart["bars"]] == [0, 14, 28]
    assert chart["total"] == Decimal("5.00")
    assert bar_chart([])["bars"] == []


def test_billing_shows_the_wallet_usage_charts_and_invoices(make_actor: MakeActor) -> None:
    seed()
    billing = make_actor(Role.BILLING)
    now = timezone.now()
    start = month_start(now)
    # Two rows on the first day of the month: an H100 instance type and a CPU one.
    usage(billing.tenant, "2.500000", end=start + timedelta(hours=2), meter="instance_seconds:gpu-h100x1")
    usage(billing.tenant, "0.250000", end=start + timedelta(hours=3), meter="instance_seconds:cpu-4x")
    invoice = Invoice.objects.create(
        tenant=billing.tenant,
        month=(start - timedelta(days=1)).date().replace(day=1),
        period_start=start - timedelta(days=28),
        period_end=start,
        subtotal=Decimal("12.34"),
        total=Decimal("12.34"),
    )

    response = browser(billing).get(page_url("billing", billing))

    page = html(response)
    assert response.status_code == 200
    assert "997.25 USD" in page  # 1000.00 of credit less 2.75 of usage
    assert "0.00 USD per hour" in page
    assert "No instances are running." in page
    assert "prepaid" in page
    # Usage by day: an SVG chart with a <title> per bar and a table of the same numbers.
    day = start.date().isoformat()
    assert '<svg role="img" aria-labelledby="usage-by-day-title"' in page
    assert f"<title>{day}: 2.75 USD</title>" in page
    assert f"<td>{day}</td><td>2.75</td>" in page
    assert len(response.context["by_day"]["bars"]) == now.day
    # Usage by GPU type: H100 and CPU.
    h100 = GpuType.objects.get(slug="h100-80gb").slug
    assert f"<title>{h100}: 2.50 USD</title>" in page
    assert "<title>CPU: 0.25 USD</title>" in page
    # Invoices link to the existing HTML invoice page.
    assert f'href="/billing/invoices/{invoice.pk}/"' in page and "12.34" in page


def test_billing_is_for_billing_readers_only(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    response = browser(member).get(page_url("billing", member))
    assert response.status_code == 403
    assert "billing.read" in html(response)


def test_an_admin_reads_billing_but_has_no_payment_forms(make_actor: MakeActor, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_console"
    admin = make_actor(Role.ADMIN)
    client = browser(admin)
    page = html(client.get(page_url("billing", admin)))
    assert page_url("billing_topup", admin) not in page
    assert page_url("billing_budget", admin) not in page
    assert client.post(page_url("billing_topup", admin), {"amount": "50.00"}).status_code == 403
    assert client.post(page_url("billing_budget", admin), {"monthly_budget": "5.00"}).status_code == 403


def test_without_stripe_the_page_says_payments_are_not_configured(
    make_actor: MakeActor, settings: Any
) -> None:
    settings.STRIPE_SECRET_KEY = ""
    owner = make_actor(Role.OWNER)
    client = browser(owner)

    page = html(client.get(page_url("billing", owner)))
    assert "Payments are not configured" in page
    assert page_url("billing_topup", owner) not in page

    for name, form in (("billing_topup", {"amount": "50.00"}), ("billing_card", {})):
        response = client.post(page_url(name, owner), form)
        assert response.status_code == 200
        assert "Payments are not configured" in html(response)


def _fake_stripe(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, Any]:
    settings.STRIPE_SECRET_KEY = "sk_test_console"
    seen: dict[str, Any] = {}

    def customer(self: Any, **kwargs: Any) -> gateway.Customer:
        return gateway.Customer(id="cus_console")

    def checkout(mode: str) -> Callable[..., gateway.CheckoutSession]:
        def create(self: Any, **kwargs: Any) -> gateway.CheckoutSession:
            seen[mode] = kwargs
            return gateway.CheckoutSession(
                id=f"cs_{mode}",
                url=f"https://checkout.stripe.test/{mode}",
                mode=mode,
                status="open",
                payment_status=None,
                amount_total=kwargs.get("amount_cents"),
                customer_id="cus_console",
                setup_intent_id=None,
                metadata={},
            )

        return create

    monkeypatch.setattr(gateway.StripeGateway, "create_customer", customer)
    monkeypatch.setattr(gateway.StripeGateway, "create_payment_checkout", checkout("payment"))
    monkeypatch.setattr(gateway.StripeGateway, "create_setup_checkout", checkout("setup"))
    return seen


def test_a_top_up_redirects_to_stripe_checkout(
    make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    seen = _fake_stripe(monkeypatch, settings)
    billing = make_actor(Role.BILLING)
    client = browser(billing)
    assert page_url("billing_topup", billing) in html(client.get(page_url("billing", billing)))

    response = client.post(page_url("billing_topup", billing), {"amount": "50.00"})

    assert response.status_code == 302
    assert response.url == "https://checkout.stripe.test/payment"
    assert seen["payment"]["amount_cents"] == 5000
    assert seen["payment"]["success_url"].endswith(f"/t/{billing.tenant.slug}/billing/?topup=success")
    assert AuditEvent.objects.filter(action="billing.topup_checkout", tenant=billing.tenant).exists()

    card = client.post(page_url("billing_card", billing))
    assert card.status_code == 302 and card.url == "https://checkout.stripe.test/setup"


@pytest.mark.parametrize(
    ("amount", "message"),
    [("abc", "A valid number is required."), ("5.00", "Must be between 10.00 and 10000.00.")],
)
def test_top_up_amount_errors_are_shown(
    make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch, settings: Any, amount: str, message: str
) -> None:
    seen = _fake_stripe(monkeypatch, settings)
    owner = make_actor(Role.OWNER)
    response = browser(owner).post(page_url("billing_topup", owner), {"amount": amount})
    assert response.status_code == 400
    assert message in html(response)
    assert "payment" not in seen


def test_setting_and_removing_the_monthly_budget(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    client = browser(billing)

    response = client.post(page_url("billing_budget", billing), {"monthly_budget": "250.00", "hard": "on"})

    assert response.status_code == 302
    account = BillingAccount.objects.get(tenant=billing.tenant)
    assert (account.monthly_budget, account.budget_hard) == (Decimal("250.00"), True)
    assert AuditEvent.objects.filter(action="billing.budget_set", tenant=billing.tenant).exists()
    page = html(client.get(page_url("billing", billing)))
    assert "Budget: 250.00 USD (hard" in page

    assert client.post(page_url("billing_budget", billing), {"monthly_budget": ""}).status_code == 302
    account.refresh_from_db()
    assert account.monthly_budget is None and account.budget_hard is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "greater than or equal to 0"),
        ("lots", "A valid number is required."),
        ("1.234", "decimal places"),
    ],
)
def test_budget_form_errors(make_actor: MakeActor, value: str, message: str) -> None:
    owner = make_actor(Role.OWNER)
    response = browser(owner).post(page_url("billing_budget", owner), {"monthly_budget": value})
    assert response.status_code == 400
    assert message in html(response)
    assert 'aria-invalid="true"' in html(response)
    assert not BillingAccount.objects.filter(tenant=owner.tenant, monthly_budget__isnull=False).exists()


def test_budget_alerts_sent_this_month_are_listed(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    this_month = month_start(timezone.now()).date()
    last_month = (month_start(timezone.now()) - timedelta(days=1)).date().replace(day=1)
    BudgetAlert.objects.create(
        tenant=billing.tenant, month=this_month, threshold=80, spend=Decimal("80.5"), budget=Decimal("100")
    )
    BudgetAlert.objects.create(
        tenant=billing.tenant, month=last_month, threshold=50, spend=Decimal("50"), budget=Decimal("100")
    )
    page = html(browser(billing).get(page_url("billing", billing)))
    assert "80% on" in page and "80.50 of 100.00 USD" in page
    assert "50% on" not in page


# --- audit log -------------------------------------------------------------------------------------------


def _event(tenant: Any, action: str, actor: str, at: datetime) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_label=actor,
        via="api",
        action=action,
        target_type="t",
        target_id="1",
        created_at=at,
    )


def test_the_audit_log_is_for_admins_and_owners(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    _event(admin.tenant, "member.change_role", "ada@example.com", timezone.now())
    assert "member.change_role" in html(browser(admin).get(page_url("audit", admin)))
    for role in (Role.MEMBER, Role.VIEWER, Role.BILLING):
        other = make_actor(role, tenant=admin.tenant)
        response = browser(other).get(page_url("audit", other))
        assert response.status_code == 403
        assert "audit.read" in html(response)


def test_audit_filters_by_action_prefix_actor_and_days(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    elsewhere = TenantFactory()
    day = datetime(2026, 5, 10, 12, tzinfo=UTC)
    _event(owner.tenant, "member.change_role", "ada@example.com", day)
    _event(owner.tenant, "member.remove", "bob@example.com", day + timedelta(days=1))
    _event(owner.tenant, "token.create", "ada@example.com", day + timedelta(days=2))
    _event(elsewhere, "member.other_tenant", "ada@example.com", day)
    client = browser(owner)

    def actions(**query: str) -> list[str]:
        response = client.get(page_url("audit", owner), query)
        assert response.status_code == 200
        return [event.action for event in response.context["page_obj"]]

    assert actions(action="member.", since="2026-05-01", until="2026-05-31") == [
        "member.remove",
        "member.change_role",
    ]
    assert actions(actor="ADA@example.com", since="2026-05-01", until="2026-05-31") == [
        "token.create",
        "member.change_role",
    ]
    assert actions(since="2026-05-11", until="2026-05-11") == ["member.remove"]  # until is inclusive
    assert "member.other_tenant" not in html(client.get(page_url("audit", owner)))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "Must not be before since."),
    ],
)
def test_audit_filter_errors_are_shown(owner: Actor, query: dict[str, str], message: str) -> None:
    response = browser(owner).get(page_url("audit", owner), query)
    assert response.status_code == 400
    assert message in html(response)


def test_audit_log_pages_fifty_events_and_keeps_the_filters(owner: Actor) -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)
    for n in range(120):
        _event(owner.tenant, f"instance.n{n:03d}", "ada@example.com", base + timedelta(minutes=n))
    client = browser(owner)

    first = client.get(page_url("audit", owner), {"action": "instance."})
    assert len(first.context["page_obj"]) == 50
    assert first.context["page_obj"].paginator.num_pages == 3
    assert "instance.n119" in html(first) and "instance.n069" not in html(first)
    assert 'href="?action=instance.&amp;page=2"' in html(first)

    last = client.get(page_url("audit", owner), {"action": "instance.", "page": "3"})
    assert [e.action for e in last.context["page_obj"]][-1] == "instance.n000"
    assert len(last.context["page_obj"]) == 20
    assert "Page 3 of 3 (120 events)" in html(last)


def test_members_of_other_tenants_never_appear_on_any_page(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    MembershipFactory(tenant=TenantFactory(name="Hidden Corp"), role=Role.OWNER)
    for name in PAGES:
        assert "Hidden Corp" not in html(browser(owner).get(page_url(name, owner)))
