"""An API token made in the console works against the API; an invited viewer sees only what a viewer may."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from apps.tenants.models import Membership
from tests.browser.conftest import (
    PASSWORD,
    Console,
    log_in,
    owner_with_tenant,
    shoot,
    sidenav,
)


def api_get(console: Console, path: str, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the live server's own http URL
        f"{console.url}{path}", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_token_created_in_the_console_works_with_the_api(console: Console, page: Page) -> None:
    owner, tenant = owner_with_tenant("Lovelace Analytics", "ada@example.com")
    log_in(page, owner.email)
    sidenav(page, tenant, "Tokens")
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()

    page.get_by_label("Name").fill("ci pipeline")
    page.get_by_role("checkbox", name=re.compile(r"instances:read")).check()
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name=re.compile("ci pipeline.*created"))).to_be_visible()
    expect(page.get_by_text("it is shown only on this page and never again")).to_be_visible()
    secret = page.get_by_label("Secret").input_value()
    assert secret
    shoot(page, "token-created")

    status, me = api_get(console, "/api/v1/me", secret)
    assert status == 200, me
    assert me["email"] == owner.email
    # The scopes chosen in the form are the token's: reading instances works, reading billing does not.
    status, _ = api_get(console, f"/api/v1/tenants/{tenant.slug}/instances", secret)
    assert status == 200
    status, body = api_get(console, f"/api/v1/tenants/{tenant.slug}/billing/balance", secret)
    assert status == 403, body

    # The secret is never shown again: the list has the token, its prefix, and that it was used.
    page.get_by_role("link", name="Back to API tokens").click()
    row = page.get_by_role("row", name=re.compile("ci pipeline"))
    expect(row).to_contain_text("instances:read")
    expect(row).to_contain_text("active")
    expect(page.get_by_text(secret)).to_have_count(0)
    assert secret not in page.content()


def test_an_invited_viewer_accepts_and_sees_only_what_a_viewer_may(
    console: Console, new_page: Callable[[str], Page]
) -> None:
    owner, tenant = owner_with_tenant("Hamilton Flight", "margaret@example.com")
    owner_page = new_page("owner")
    log_in(owner_page, owner.email)
    # The owner sees where instances are launched; the viewer will be refused that very page.
    sidenav(owner_page, tenant, "Instances")
    launch = owner_page.get_by_role("main").get_by_role("link", name=re.compile(r"^Launch"))
    expect(launch.first).to_be_visible()
    launch.first.click()
    expect(owner_page.get_by_role("heading", name=re.compile("Launch"))).to_be_visible()
    launch_url = owner_page.url

    sidenav(owner_page, tenant, "Members")
    owner_page.get_by_label("Email").fill("vera@example.com")
    owner_page.get_by_label("Role", exact=True).select_option("viewer")
    owner_page.get_by_role("button", name="Send invitation").click()
    expect(owner_page.get_by_text("Invited vera@example.com as viewer")).to_be_visible()
    expect(owner_page.get_by_role("row", name=re.compile("vera@example.com"))).to_contain_text("viewer")
    shoot(owner_page, "members")

    # The invitee follows the emailed link, has no account yet, signs up, verifies, and accepts.
    invitee = new_page("invitee")
    invitation_link = console.link_in_mail("vera@example.com", "/invitations/accept/")
    invitee.goto(invitation_link)
    expect(invitee.get_by_role("heading", name="Log in")).to_be_visible()
    invitee.get_by_role("link", name="Create an account").click()
    invitee.get_by_label("Email").fill("vera@example.com")
    invitee.get_by_label("Password").fill(PASSWORD)
    invitee.get_by_role("button", name="Sign up").click()
    expect(invitee.get_by_role("heading", name="Join a tenant")).to_be_visible()
    invitee.goto(console.link_in_mail("vera@example.com", "/accounts/verify-email/"))
    expect(invitee.get_by_text("Your email address is verified.")).to_be_visible()
    invitee.goto(invitation_link)
    invitee.get_by_role("button", name="Accept the invitation").click()
    expect(invitee.get_by_text(f"You joined {tenant.name} as viewer.")).to_be_visible()
    assert Membership.objects.get(tenant=tenant, user__email="vera@example.com").role == "viewer"

    # A viewer reads instances but is offered no launch, and the launch page itself refuses with the reason.
    sidenav(invitee, tenant, "Instances")
    main = invitee.get_by_role("main")
    expect(main.get_by_role("heading", name="Instances", exact=True)).to_be_visible()
    expect(main.get_by_role("link", name=re.compile(r"^Launch"))).to_have_count(0)
    expect(main.get_by_role("button", name=re.compile(r"^Launch"))).to_have_count(0)
    response = invitee.goto(launch_url)
    assert response is not None and response.status == 403
    expect(invitee.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(invitee.get_by_role("main")).to_contain_text("viewer")
    # Nor can a viewer invite anyone or change roles.
    sidenav(invitee, tenant, "Members")
    expect(invitee.get_by_role("button", name="Send invitation")).to_have_count(0)
    expect(invitee.get_by_role("combobox", name=re.compile("Role of"))).to_have_count(0)
    expect(invitee.get_by_role("row", name=re.compile("margaret@example.com"))).to_contain_text("owner")
