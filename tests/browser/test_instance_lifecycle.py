"""A new customer, end to end in the browser: sign up, verify the email, create a tenant, add an SSH key,
launch an instance on the sandbox cluster, watch it become running without reloading, stop, start and
terminate it."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from apps.instances.models import Instance
from tests.browser.conftest import (
    CLUSTER_TIMEOUT_MS,
    Console,
    create_tenant,
    new_ssh_public_key,
    shoot,
    sidenav,
    sign_up,
)


def state_shown(page: Page, state: str) -> None:
    """The instance page's status shows `state`, however long the cluster takes (bounded)."""
    status = page.get_by_role("region", name="Status")
    expect(status.get_by_text(state, exact=True)).to_be_visible(timeout=CLUSTER_TIMEOUT_MS)


def act(page: Page, action: str, name: str) -> None:
    """Press the action's button on the instance page and confirm on the page that asks."""
    page.get_by_role("group", name="Instance actions").get_by_role("button", name=action, exact=True).click()
    expect(page.get_by_role("heading", name=f"{action} {name}?")).to_be_visible()
    page.get_by_role("button", name=f"Yes, {action.lower()} {name}").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def test_sign_up_launch_watch_it_run_stop_start_terminate(console: Console, page: Page) -> None:
    sign_up(page, console, "grace@example.com", "Grace Hopper")
    tenant = create_tenant(page, "Hopper Compilers")
    console.grant_credit(tenant)

    sidenav(page, tenant, "SSH keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Public key").fill(new_ssh_public_key("grace@laptop"))
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_text(re.compile(r"Added the key laptop \(SHA256:"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("laptop"))).to_contain_text("ED25519", ignore_case=True)

    sidenav(page, tenant, "Launch")
    expect(page.get_by_role("heading", name="Launch an instance")).to_be_visible()
    page.get_by_label("Region").select_option("us-east-1")
    a100 = page.get_by_role("radio", name=re.compile(r"gpu-a100x1$"))
    expect(a100).to_be_visible()
    # Choosing a GPU type narrows the instance types in place (HTMX), with their availability and price.
    page.get_by_label("GPU type").select_option("h100-80gb")
    expect(a100).to_have_count(0)
    h100 = page.get_by_role("radio", name=re.compile(r"gpu-h100x1$"))
    expect(h100).to_be_enabled()
    expect(page.get_by_role("row", name=re.compile(r"gpu-h100x1"))).to_contain_text("$2.49")
    h100.check()
    expect(page.get_by_text("Estimated cost")).to_be_visible()
    page.get_by_label("Image", exact=True).select_option("pytorch")
    page.get_by_role("checkbox", name=re.compile("laptop")).check()
    page.get_by_label(re.compile(r"^Name")).fill("first-light")
    page.get_by_label("Auto-stop").select_option(label="After 8 hours")
    shoot(page, "launch", docs=True)
    page.get_by_role("button", name="Launch", exact=True).click()

    expect(page.get_by_role("heading", name="first-light", exact=True)).to_be_visible()
    expect(page.get_by_text("Launching first-light.")).to_be_visible()
    instance = Instance.objects.get(tenant=tenant, name="first-light")
    assert instance.instance_type.slug == "gpu-h100x1" and instance.auto_stop_after == 8 * 3600
    assert list(instance.ssh_keys.values_list("name", flat=True)) == ["laptop"]

    # The region has no cluster yet, so the launch waits: the page shows it pending. Then the region is
    # connected and the operator runs; the page shows the instance running on the same document, unreloaded.
    status = page.get_by_role("region", name="Status")
    expect(status.get_by_text("pending", exact=True)).to_be_visible()
    expect(status.get_by_text("Available once the instance is running.")).to_be_visible()
    page.evaluate("window.sameDocument = true")
    console.start_operator()
    state_shown(page, "running")
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"
    expect(status.get_by_text(re.compile(r"^ssh -p \d+ "))).to_be_visible()
    expect(status.get_by_role("button", name="Copy the connection command")).to_be_visible()
    expect(page.get_by_role("region", name="Timeline")).to_contain_text("pod_ready")
    shoot(page, "instance-running", docs=True)

    act(page, "Stop", "first-light")
    state_shown(page, "stopped")
    expect(status.get_by_text("Available once the instance is running.")).to_be_visible()

    act(page, "Start", "first-light")
    state_shown(page, "running")

    sidenav(page, tenant, "Instances")
    row = page.get_by_role("row", name=re.compile("first-light"))
    expect(row).to_contain_text("running")
    shoot(page, "instances", docs=True)
    sidenav(page, tenant, "Dashboard")
    expect(page.get_by_role("main")).to_contain_text("first-light")
    shoot(page, "dashboard", docs=True)

    sidenav(page, tenant, "Instances")
    row.get_by_role("link", name="first-light").click()
    act(page, "Terminate", "first-light")
    state_shown(page, "terminated")
    expect(page.get_by_role("group", name="Instance actions")).to_have_count(0)
    assert Instance.objects.get(pk=instance.pk).state == "terminated"
