"""The edges of two-factor authentication: an Authorization header cannot smuggle an unverified session past
the middleware, staff API views check the second factor themselves, and turning two-factor on ends the
user's other sessions (and, if asked, their API tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts import two_factor
from apps.accounts.models import ApiToken, User
from apps.audit.models import AuditEvent
from apps.billing.models import CreditGrant
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff, totp_code
from tests.factories import MembershipFactory, TenantFactory, make_token
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

SETUP = reverse("two_factor_setup")
ME = "/api/v1/me"


def _enable(user: User) -> None:
    device = two_factor.two_factor_setup_start(user=user)
    two_factor.two_factor_confirm(user=user, code=totp_code(device))


def _unverified_api_session(user: User, header: str | None = None) -> APIClient:
    """An API client on a session that never passed the second factor (signed in after two-factor was on,
    without the code step), sending `header` as Authorization."""
    client = APIClient()
    client.force_login(user)
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


@pytest.fixture
def staff_member(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.OWNER, is_staff=True, is_superuser=True)


def _grant(client: APIClient, actor: Actor) -> Any:
    return client.post(
        f"/api/v1/staff/tenants/{actor.tenant.slug}/credit-grants",
        {"amount": "500.00", "reason": "free money", "kind": "promotional"},
        format="json",
    )


# --- one header parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["bearer x", "BEARER x", "bEaReR gpc_abcdefghij_" + "A" * 40, "bearer", "Bearer"]
)
def test_a_bearer_header_in_any_case_never_rides_on_an_unverified_session(owner: Actor, header: str) -> None:
    """The bypass: the middleware let `bearer ...` through as a token request, token authentication only
    knew `Bearer`, and the session answered instead. Now the token decides, and a bad one is 401."""
    _enable(owner.user)
    plain = _unverified_api_session(owner.user)
    assert_error(plain.get(ME), 403, "two_factor_required")  # the session alone is stopped

    response = _unverified_api_session(owner.user, header).get(owner.url())

    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unverified_staff_session_cannot_grant_credit_with_a_lowercase_bearer(staff_member: Actor) -> None:
    _enable(staff_member.user)
    client = _unverified_api_session(staff_member.user, "bearer anything")

    response = _grant(client, staff_member)

    assert_error(response, 401)
    assert not CreditGrant.objects.filter(reason="free money").exists()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_a_valid_token_works_with_the_scheme_in_any_case(owner: Actor, scheme: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {owner.token_plaintext}")

    response = client.get(ME)

    assert response.status_code == 200
    assert response.json()["token"]["id"] == str(owner.token.pk)


# --- staff API views check the second factor themselves ------------------------------------------------


def _without(*middleware: str) -> list[str]:
    return [m for m in django_settings.MIDDLEWARE if m not in middleware]


def test_staff_api_refuses_an_unverified_session_even_without_the_middleware(
    staff_member: Actor, settings: Any
) -> None:
    """Defence in depth: the staff endpoints do not rely on the middleware alone."""
    settings.MIDDLEWARE = _without("apps.accounts.middleware.TwoFactorMiddleware")
    _enable(staff_member.user)

    response = _grant(_unverified_api_session(staff_member.user), staff_member)

    assert_error(response, 403, "two_factor_required")
    assert not CreditGrant.objects.filter(reason="free money").exists()
    verified = login_staff(APIClient(), staff_member.user)
    assert _grant(verified, staff_member).status_code == 201


def test_staff_api_and_pages_fail_closed_without_django_otp(staff_member: Actor, settings: Any) -> None:
    """Without OTPMiddleware nobody is `is_verified`: staff powers are refused, not granted."""
    settings.MIDDLEWARE = _without(
        "django_otp.middleware.OTPMiddleware", "apps.accounts.middleware.TwoFactorMiddleware"
    )
    api = APIClient()
    api.force_login(staff_member.user)
    page = Client()
    page.force_login(staff_member.user)

    assert_error(_grant(api, staff_member), 403, "two_factor_required")
    assert page.get(reverse("console:staff_tenants")).status_code == 404


# --- turning two-factor on ------------------------------------------------------------------------------


def test_turning_two_factor_on_ends_the_users_other_sessions(owner: Actor) -> None:
    other_page = Client()
    other_page.force_login(owner.user)
    other_api = owner.session_client()
    assert other_page.get(reverse("console:home")).status_code == 200
    assert other_api.get(ME).status_code == 200
    this = Client()
    this.force_login(owner.user)
    this.get(SETUP)
    device = two_factor.pending_device(owner.user)
    assert device is not None

    done = this.post(SETUP, {"code": totp_code(device)})

    assert done.status_code == 200
    assert "Your other sessions are signed out." in done.content.decode()
    gone = other_page.get(reverse("console:home"))
    assert gone.status_code == 302 and gone.url.startswith(reverse("login"))
    assert_error(other_api.get(ME), 401)
    # The session that turned it on goes on, verified.
    assert this.get(reverse("two_factor")).status_code == 200
    assert this.get(reverse("console:home")).status_code == 200
    event = AuditEvent.objects.get(action="two_factor.enabled")
    assert event.metadata["sessions_ended"] is True and event.metadata["tokens_revoked"] == 0
    # API tokens are left alone unless asked.
    assert owner.token_client().get(ME).status_code == 200


def test_turning_two_factor_on_can_revoke_every_api_token(owner: Actor) -> None:
    elsewhere = TenantFactory()
    MembershipFactory(tenant=elsewhere, user=owner.user, role=Role.MEMBER)
    _other_token, other_plaintext = make_token(user=owner.user, tenant=elsewhere)
    _bystander, bystander_plaintext = make_token(
        user=MembershipFactory(tenant=owner.tenant).user, tenant=owner.tenant
    )
    client = Client()
    client.force_login(owner.user)
    page = client.get(SETUP)
    assert 'name="revoke_tokens"' in page.content.decode()
    device = two_factor.pending_device(owner.user)
    assert device is not None

    done = client.post(SETUP, {"code": totp_code(device), "revoke_tokens": "on"})

    assert done.status_code == 200
    assert "All your API tokens are revoked" in done.content.decode()
    for plaintext in (owner.token_plaintext, other_plaintext):
        assert_error(owner.token_client(plaintext).get(ME), 401)
    assert not ApiToken.objects.filter(user=owner.user, revoked_at__isnull=True).exists()
    assert owner.token_client(bystander_plaintext).get(ME).status_code == 200  # only the user's own
    revocations = AuditEvent.objects.filter(action="token.revoke", actor_user=owner.user)
    assert {(e.tenant_id, e.metadata["reason"]) for e in revocations} == {
        (owner.tenant.pk, "two_factor_enabled"),
        (elsewhere.pk, "two_factor_enabled"),
    }
    assert AuditEvent.objects.get(action="two_factor.enabled").metadata["tokens_revoked"] == 2
