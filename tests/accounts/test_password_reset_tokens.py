"""A password reset ends everything the old password could have opened: sessions and every API token."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import MembershipFactory, TenantFactory, make_token
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "quiet-meadow-lighthouse-7"


def _reset_form_url(client: Client, email: str, mailoutbox: list) -> str:
    client.post(reverse("password_reset"), {"email": email})
    link = re.search(r"https?://\S+", mailoutbox[-1].body)
    assert link
    return client.get(re.sub(r"^https?://[^/]+", "", link.group(0))).url


def test_a_password_reset_revokes_every_api_token_of_the_user(owner: Actor, mailoutbox: list) -> None:
    elsewhere = TenantFactory()
    MembershipFactory(tenant=elsewhere, user=owner.user, role=Role.VIEWER)
    _other, other_plaintext = make_token(user=owner.user, tenant=elsewhere)
    _bystander, bystander_plaintext = make_token(
        user=MembershipFactory(tenant=owner.tenant).user, tenant=owner.tenant
    )
    attacker_session = owner.session_client()
    assert attacker_session.get("/api/v1/me").status_code == 200
    client = Client()
    form_url = _reset_form_url(client, owner.user.email, mailoutbox)
    form = client.get(form_url)
    assert "revokes all your API tokens" in form.content.decode()

    done = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)

    assert done.status_code == 200
    assert "all your API tokens are revoked" in done.content.decode()
    for plaintext in (owner.token_plaintext, other_plaintext):
        assert_error(owner.token_client(plaintext).get("/api/v1/me"), 401)
    assert not ApiToken.objects.filter(user=owner.user, revoked_at__isnull=True).exists()
    assert owner.token_client(bystander_plaintext).get("/api/v1/me").status_code == 200
    assert_error(attacker_session.get("/api/v1/me"), 401)  # sessions end with the old password
    revocations = AuditEvent.objects.filter(action="token.revoke", actor_user=owner.user)
    assert {(e.tenant_id, e.metadata["reason"]) for e in revocations} == {
        (owner.tenant.pk, "password_reset"),
        (elsewhere.pk, "password_reset"),
    }
    assert AuditEvent.objects.get(action="user.reset_password").metadata["tokens_revoked"] == 2


def test_a_refused_new_password_revokes_nothing(owner: Actor, mailoutbox: list) -> None:
    client = Client()
    form_url = _reset_form_url(client, owner.user.email, mailoutbox)

    response = client.post(form_url, {"new_password1": "password123", "new_password2": "password123"})

    assert response.status_code == 200
    assert owner.token_client().get("/api/v1/me").status_code == 200
    assert not AuditEvent.objects.filter(action="token.revoke").exists()
