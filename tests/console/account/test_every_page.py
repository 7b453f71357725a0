"""Every console account page under /t/<tenant_slug>/ (tokens, members, quotas, billing, audit): sessions,
strangers (404 naming nothing), CSRF, and other tenants' members never shown. Each page calls the same
services and selectors as the API; these tests go through the Django test client and check what a person
sees."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import ApiToken
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.console.account.helpers import PAGES, MakeActor, browser, has_csrf, html, page_url
from tests.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


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


def test_members_of_other_tenants_never_appear_on_any_page(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    MembershipFactory(tenant=TenantFactory(name="Hidden Corp"), role=Role.OWNER)
    for name in PAGES:
        assert "Hidden Corp" not in html(browser(owner).get(page_url(name, owner)))
