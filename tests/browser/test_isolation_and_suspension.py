"""Another tenant's instance is a 404 however the URL is edited; a tenant staff suspends in the staff console
(/staff/) cannot launch, and its console says why."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from apps.catalog.models import Region, RegionNode
from apps.instances.models import Instance
from apps.instances.services import LaunchRequest, instance_launch
from apps.tenants.models import Tenant, TenantStatus
from tests.browser.conftest import Console, log_in, owner_with_tenant, shoot, sidenav
from tests.conftest import totp_code, totp_device
from tests.factories import UserFactory
from tests.operator.sandbox_support import wait_for


def launched(user: object, tenant: Tenant, name: str) -> Instance:
    """An instance made through the service, as the API would; the browser only reads it."""
    return instance_launch(
        actor=user,  # type: ignore[arg-type]
        tenant=tenant,
        req=LaunchRequest(instance_type="cpu-4x", region="us-east-1", image="cuda-12", name=name),
    )


def test_another_tenants_instance_is_not_found_whatever_the_url(console: Console, page: Page) -> None:
    mine_owner, mine = owner_with_tenant("Babbage Engines", "charles@example.com")
    theirs_owner, theirs = owner_with_tenant("Secret Rival Labs", "rival@example.com")
    my_instance = launched(mine_owner, mine, "difference-engine")
    their_instance = launched(theirs_owner, theirs, "confidential-model-run")

    log_in(page, mine_owner.email)
    sidenav(page, mine, "Instances")
    page.get_by_role("link", name="difference-engine").click()
    expect(page.get_by_role("heading", name=re.compile("difference-engine"))).to_be_visible()
    my_url = page.url
    assert str(my_instance.pk) in my_url

    # Swap in the other tenant's instance id, keeping my tenant in the URL, and then their tenant too.
    for url in (
        my_url.replace(str(my_instance.pk), str(their_instance.pk)),
        my_url.replace(str(my_instance.pk), str(their_instance.pk)).replace(
            f"/t/{mine.slug}/", f"/t/{theirs.slug}/"
        ),
        f"/t/{theirs.slug}/instances/",
    ):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        content = page.content()
        assert "confidential-model-run" not in content
        assert "Secret Rival Labs" not in content


def test_staff_suspends_a_tenant_and_its_launch_button_says_why(
    console: Console, new_page: Callable[[str], Page]
) -> None:
    owner, tenant = owner_with_tenant("Noether Research", "emmy@example.com")
    owner_page = new_page("owner")
    log_in(owner_page, owner.email)
    sidenav(owner_page, tenant, "Launch")
    launch_button = owner_page.get_by_role("button", name=re.compile(r"^Launch"))
    expect(launch_button).to_be_enabled()

    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    device = totp_device(staff)
    staff_page = new_page("staff")
    staff_page.goto("/staff/")  # signed out: the staff area sends nobody anywhere, so log in first
    staff_page.goto("/accounts/login/?next=/staff/")
    staff_page.get_by_label(re.compile("email", re.IGNORECASE)).fill(staff.email)
    staff_page.get_by_label(re.compile("password", re.IGNORECASE)).fill("correct-horse-battery-9")
    staff_page.get_by_role("button", name=re.compile("log in", re.IGNORECASE)).click()
    # Two-factor is mandatory for staff: the code their authenticator app shows now.
    staff_page.get_by_label("Authentication code").fill(totp_code(device))
    staff_page.get_by_role("button", name="Verify").click()
    expect(staff_page.get_by_role("heading", name="Tenants")).to_be_visible()
    shoot(staff_page, "staff-tenants", docs=True)
    staff_page.get_by_role("link", name=tenant.name).click()
    staff_page.get_by_role("link", name=re.compile("^Suspend")).click()
    staff_page.get_by_label(re.compile("^Reason")).fill("Unpaid invoice INV-2026-0042")
    staff_page.get_by_role("button", name=f"Yes, suspend {tenant.name}").click()
    expect(staff_page.get_by_text(f"{tenant.name} is suspended.")).to_be_visible()
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.SUSPENDED
    shoot(staff_page, "staff-tenant-suspended")
    # With us-east-1 connected, the operator's capacity pass reports the sandbox's nodes to staff.
    console.start_operator()
    us_east = Region.objects.get(slug="us-east-1")
    wait_for(lambda: RegionNode.objects.filter(region=us_east).exists(), what="node rows", timeout=60)
    staff_page.goto("/staff/capacity/")
    expect(staff_page.get_by_role("heading", name="Capacity")).to_be_visible()
    expect(staff_page.get_by_role("rowheader", name="us-east-1-h100-1", exact=True)).to_be_visible()
    shoot(staff_page, "staff-capacity", docs=True)

    # The owner's next look at the launch page: the button is disabled, and the reason is right there.
    owner_page.reload()
    launch_button = owner_page.get_by_role("button", name=re.compile(r"^Launch"))
    expect(launch_button).to_be_disabled()
    main = owner_page.get_by_role("main")
    expect(main).to_contain_text("suspended")
    expect(main).to_contain_text("Unpaid invoice INV-2026-0042")
    # The button itself points at the explanation, so assistive technology reads why it is disabled.
    described_by = launch_button.get_attribute("aria-describedby")
    assert described_by, "the disabled launch button should be described by its explanation"
    explanation = owner_page.locator(f"#{described_by.split()[0]}")
    expect(explanation).to_be_visible()
    expect(explanation).to_contain_text(re.compile("suspended", re.IGNORECASE))
    shoot(owner_page, "launch-suspended")
