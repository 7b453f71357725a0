"""Accessibility in a real browser: a keyboard-only customer, and a phone-sized screen.

Keyboard only: from the dashboard, Tab reaches the skip link (which moves focus to the content) and the
navigation, Enter opens the Launch page, and the launch form is filled and submitted with key presses alone
(no clicks); the instance then shows on its page and in the list. Every stop on the way shows the focus
outline (its computed style, not a guess from the stylesheet).

Phone: at 375 x 740 the dashboard, instances, launch and billing pages do not scroll sideways, and the
navigation is on screen and reachable with Tab. A reduced-motion preference turns smooth scrolling off.

Screenshots (a11y-*.png) go to the artifacts directory of the other browser tests (var/artifacts/browser/).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from apps.accounts import services as account_services
from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.instances.services import LaunchRequest, instance_launch
from apps.tenants.models import Tenant
from tests.billing.wallet_helpers import usage
from tests.browser.conftest import (
    ACTION_TIMEOUT_MS,
    Console,
    log_in,
    new_ssh_public_key,
    owner_with_tenant,
    shoot,
)

FOCUS_RGB = "rgb(180, 83, 9)"  # --focus in static/css/console.css
PHONE = {"width": 375, "height": 740}
MAX_TABS = 60

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute("name"), type: el.getAttribute("type"),
    cls: el.className, text: (el.innerText || el.value || "").trim().slice(0, 60),
    inNav: !!el.closest("nav.sidenav"), href: el.getAttribute("href"),
    outlineStyle: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth),
    outlineColor: style.outlineColor,
    left: box.left, right: box.right, top: box.top, width: box.width, height: box.height,
    viewport: window.innerWidth,
  };
}"""


def focused(page: Page) -> dict[str, Any]:
    info = page.evaluate(FOCUSED)
    assert info is not None, "nothing has the focus"
    return info


def assert_outlined(info: dict[str, Any]) -> None:
    """The focused element shows the focus outline: solid, at least 2 px, in the focus colour; and it is on
    screen (a focus nobody can see is no focus)."""
    where = f"{info['tag']}#{info['id']} {info['text']!r}"
    assert info["outlineStyle"] == "solid", f"{where}: outline {info['outlineStyle']}"
    assert info["outlineWidth"] >= 2, f"{where}: outline {info['outlineWidth']} px"
    assert info["outlineColor"] == FOCUS_RGB, f"{where}: outline colour {info['outlineColor']}"
    assert info["width"] > 0 and info["height"] > 0 and info["right"] > 0, f"{where} is not on screen"


def tab_to(page: Page, matches: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Press Tab until the focused element matches, checking the outline at every stop."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        info = focused(page)
        assert_outlined(info)
        if matches(info):
            return info
    raise AssertionError(f"{MAX_TABS} presses of Tab did not reach {what}")


def no_sideways_scroll(page: Page, what: str) -> None:
    sizes = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})"
    )
    assert sizes["scroll"] <= sizes["client"], f"{what} scrolls sideways at {PHONE['width']} px: {sizes}"


def test_keyboard_only_from_the_dashboard_to_a_launched_instance(console: Console, page: Page) -> None:
    owner, tenant = owner_with_tenant("Lovelace Analytics", "ada@example.com")
    account_services.ssh_key_create(
        actor=owner, tenant=tenant, name="laptop", public_key=new_ssh_public_key("ada@laptop"), private=False
    )
    log_in(page, owner.email)
    page.goto(f"/t/{tenant.slug}/")
    expect(page.get_by_role("heading", name="Lovelace Analytics", level=1)).to_be_visible()

    # The first Tab lands on the skip link, which appears when focused; Enter moves the focus to the content.
    page.keyboard.press("Tab")
    skip = focused(page)
    assert skip["cls"] == "skip-link" and skip["text"] == "Skip to content"
    assert_outlined(skip)
    assert 0 <= skip["left"] < skip["viewport"], "the skip link stays off screen when focused"
    page.keyboard.press("Enter")
    assert focused(page)["id"] == "content"

    # From the top again: Tab through the top bar into the tenant's navigation, to its Launch link.
    page.goto(f"/t/{tenant.slug}/")
    stop = tab_to(page, lambda f: f["inNav"], "the navigation")
    assert stop["text"] == "Dashboard"
    shoot(page, "a11y-keyboard-nav")
    tab_to(page, lambda f: f["inNav"] and f["text"] == "Launch", "the Launch link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Launch an instance")).to_be_visible()

    # The launch form, by keyboard: region by typing its name, "CPU only" by typing C (htmx reloads the
    # instance types), the next instance type with an arrow key, the SSH key with Space, a name, Enter.
    us_east = Region.objects.get(slug="us-east-1")
    tab_to(page, lambda f: f["id"] == "region", "the region")
    page.keyboard.type(us_east.name)
    expect(page.locator("#region")).to_have_value("us-east-1")
    tab_to(page, lambda f: f["id"] == "gpu_type", "the GPU type")
    page.keyboard.type("CPU")
    expect(page.locator("#gpu_type")).to_have_value("cpu")
    expect(page.get_by_role("radio", name=re.compile(r"gpu-h100x1$"))).to_have_count(0)
    radio = tab_to(page, lambda f: f["name"] == "instance_type", "the instance types")
    page.keyboard.press("ArrowDown")
    chosen = focused(page)
    assert chosen["name"] == "instance_type" and chosen["id"] != radio["id"]
    chosen_slug = chosen["id"].removeprefix("it-")
    expect(page.locator(f"#{chosen['id']}")).to_be_checked()
    price = page.locator(f"#{chosen['id']}").get_attribute("data-price")
    expect(page.locator("#estimate")).to_have_text(price or "")
    tab_to(page, lambda f: f["name"] == "ssh_key_ids", "the SSH key")
    page.keyboard.press("Space")
    expect(page.get_by_role("checkbox", name=re.compile("laptop"))).to_be_checked()
    tab_to(page, lambda f: f["id"] == "name", "the name")
    page.keyboard.type("keyboard-only")
    shoot(page, "a11y-keyboard-launch")
    tab_to(page, lambda f: f["id"] == "launch-button", "the Launch button")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="keyboard-only", exact=True)).to_be_visible()
    expect(page.get_by_text("Launching keyboard-only.")).to_be_visible()
    instance = Instance.objects.get(tenant=tenant, name="keyboard-only")
    assert instance.instance_type.slug == chosen_slug and instance.region.slug == "us-east-1"
    assert list(instance.ssh_keys.values_list("name", flat=True)) == ["laptop"]

    # And it is in the list, reached by keyboard too.
    tab_to(page, lambda f: f["inNav"] and f["text"] == "Instances", "the Instances link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("row", name=re.compile("keyboard-only"))).to_be_visible()
    shoot(page, "a11y-keyboard-instances")


def phone_tenant() -> tuple[Any, Tenant]:
    """An owner whose pages have something wide on them: instances, a ledger, a launch form."""
    owner, tenant = owner_with_tenant("Somerville Computing Laboratory", "mary@example.com")
    for name, instance_type in (
        ("a-rather-long-instance-name-for-a-phone", "gpu-h100x4"),
        ("trainer", "cpu-4x"),
    ):
        instance_launch(
            actor=owner,
            tenant=tenant,
            req=LaunchRequest(instance_type=instance_type, region="us-east-1", image="pytorch", name=name),
        )
    now = timezone.now()
    for days_ago in range(0, 30, 3):
        usage(tenant, f"{days_ago + 1}.250000", end=now - timedelta(days=days_ago, hours=1))
    return owner, tenant


def test_the_main_pages_fit_a_phone_and_keep_their_navigation(console: Console, browser: Browser) -> None:
    owner, tenant = phone_tenant()
    context = browser.new_context(base_url=console.url, viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        page = context.new_page()
        log_in(page, owner.email)
        pages = {
            "dashboard": (f"/t/{tenant.slug}/", "Somerville Computing Laboratory"),
            "instances": (f"/t/{tenant.slug}/instances/", "Instances"),
            "launch": (f"/t/{tenant.slug}/launch/", "Launch an instance"),
            "billing": (f"/t/{tenant.slug}/billing/", "Billing"),
        }
        for name, (url, heading) in pages.items():
            page.goto(url)
            expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
            no_sideways_scroll(page, name)
            nav = page.get_by_role("navigation", name=tenant.name, exact=True)
            for link in ("Dashboard", "Instances", "Launch", "Billing"):
                box = nav.get_by_role("link", name=link, exact=True).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], link
            stop = tab_to(page, lambda f: f["inNav"], "the navigation")
            assert stop["right"] <= PHONE["width"]
            shoot(page, f"a11y-phone-{name}")
        # The charts scale down with the screen rather than pushing it wider.
        page.goto(f"/t/{tenant.slug}/")
        for chart in ("#spend-by-day svg", "#runway-chart svg"):
            box = page.locator(chart).bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"], chart
        # Smooth scrolling (the skip link's jump) only for those who have not asked for less motion.
        scrolling = "() => getComputedStyle(document.documentElement).scrollBehavior"
        page.emulate_media(reduced_motion="no-preference")
        assert page.evaluate(scrolling) == "smooth"
        page.emulate_media(reduced_motion="reduce")
        assert page.evaluate(scrolling) == "auto"
    finally:
        context.close()
