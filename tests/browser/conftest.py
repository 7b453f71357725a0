"""Browser tests: Playwright drives Debian's Chromium against a live server on the test database.

Nothing is mocked. The live server (pytest-django's ``live_server``: a thread on 127.0.0.1 serving the test
database, so every test here is transactional) has the catalog seeded and, once a test asks
(``console.start_operator()``), us-east-1 connected to the Kubernetes sandbox and the operator running
in-process (threads with a stop event, as in test_operator_sandbox.py), so an instance launched in the console
really becomes running and the page sees it through its HTMX polling.

Chromium is Debian's package (``make browser`` / scripts/browser.sh installs it); Playwright's own browser
downloads are never used. A missing Chromium fails the run, it is never skipped.

Screenshots land in var/artifacts/browser/: one for every failed test, and one per main page (``shoot``).
With GPUCLOUD_DOCS_SCREENSHOTS=1 the README's pages are also written to docs/screenshots/ (then commit them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from kubernetes import client
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from apps.billing.services import credit_grant_create
from apps.operator import names
from apps.operator.operator_loop import Operator, OperatorConfig
from apps.tenants.models import Tenant
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tests.fixtures.kube import Sandbox, delete_namespace
from tests.instances.helpers import Catalog, ed25519_public_key, seed
from tests.operator.sandbox_support import connect, wait_for

CHROMIUM = os.environ.get("GPUCLOUD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "artifacts" / "browser"
DOCS_SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
# Bounds for a hung server or cluster, not performance assertions.
ACTION_TIMEOUT_MS = 15_000
CLUSTER_TIMEOUT_MS = 90_000
OPERATOR = OperatorConfig(
    resync_seconds=2.0, lock_retry_seconds=0.5, watch_timeout_seconds=3, gc_known_tenants_only=True
)

expect.set_options(timeout=ACTION_TIMEOUT_MS)


# --- the browser ----------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Chromium for the tests of this package, closed after them."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `make browser` (scripts/browser.sh), "
            "or point GPUCLOUD_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):  # the artifacts are this run's
        stale.unlink()
    # Playwright's sync API keeps an asyncio loop running on the test's thread while it is started; the ORM
    # calls the tests make between page actions are plain synchronous calls, so Django's async-context guard
    # is lifted for exactly as long (and the rest of the suite keeps it).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture
def new_page(
    browser: Browser, live_server: Any, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Page]]:
    """A factory of pages, each in its own browser context (its own cookies: one per person in the test).
    Every page of a failed test is saved to var/artifacts/browser/FAILED-<test>-<who>.png."""
    contexts: list[tuple[str, BrowserContext, Page]] = []

    def make(who: str = "user") -> Page:
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        contexts.append((who, context, page))
        return page

    yield make
    failed = _failed(request)
    for who, context, page in contexts:
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}-{who}.png"), full_page=True)
            except Exception as exc:  # a screenshot must not hide the test's own failure
                print(f"no screenshot of {who}: {exc}")
        context.close()


@pytest.fixture
def page(new_page: Callable[[str], Page]) -> Page:
    return new_page("user")


def shoot(page: Page, name: str, *, docs: bool = False) -> None:
    """Save a screenshot of a main page as a test artifact; `docs` pages also go to docs/screenshots/ (what
    the README shows) when GPUCLOUD_DOCS_SCREENSHOTS=1. Both are of the whole page, whatever the scroll
    position the test left (the launch form is filled at its bottom; the dashboard's GPU chart is below the
    fold)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("GPUCLOUD_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=True)


# --- the live control plane -----------------------------------------------------------------------------


@dataclass
class Console:
    """The live server with the catalog seeded. When a test asks, us-east-1 is connected to its sandbox
    cluster and the operator (in-process threads, as `manage.py operator` runs them) started; until then the
    region has no cluster, so a launch is accepted and stays pending, whatever the timing."""

    url: str
    catalog: Catalog
    sandbox: Sandbox
    operators: list[Operator] = field(default_factory=list)

    def start_operator(self) -> Operator:
        """Connect us-east-1 to the sandbox and run the operator; its resync takes up pending launches."""
        connect(self.catalog.us_east, self.sandbox)
        operator = Operator(OPERATOR, regions=["us-east-1"]).start()
        self.operators.append(operator)
        wait_for(lambda: "us-east-1" in operator.leading(), what="the operator to lead us-east-1", timeout=60)
        return operator

    def link_in_mail(self, to: str, path_fragment: str) -> str:
        """The link containing `path_fragment` in the latest email to `to` (locmem backend)."""
        for message in reversed(mail.outbox):
            if to in message.to:
                for link in re.findall(r"https?://\S+", message.body):
                    if path_fragment in link:
                        parts = urlsplit(link)
                        return f"{parts.path}?{parts.query}" if parts.query else parts.path
        sent = [message.to for message in mail.outbox]
        raise AssertionError(f"no email to {to} with a link to {path_fragment}; sent: {sent}")

    @staticmethod
    def grant_credit(tenant: Tenant, amount: str = "500.00") -> None:
        """New tenants have no balance; the tests top them up the way staff would."""
        credit_grant_create(
            tenant=tenant, kind="promotional", amount=Decimal(amount), reason="browser test credit"
        )


@pytest.fixture
def console(
    live_server: Any,
    transactional_db: Any,
    settings: Any,
    sandbox: Sandbox,
    kube_clients: dict[str, client.ApiClient],
) -> Iterator[Console]:
    settings.SITE_URL = live_server.url  # links in emails point at the live server
    live = Console(url=live_server.url, catalog=seed(), sandbox=sandbox)
    try:
        yield live
    finally:
        for operator in live.operators:
            operator.shutdown()
        # Every tenant namespace this test made in the shared sandbox goes away with it.
        for tenant in Tenant.objects.all():
            delete_namespace(kube_clients["us-east-1"], names.namespace_name(tenant.pk, tenant.slug))


# --- steps shared by the tests --------------------------------------------------------------------------


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your tenants")).to_be_visible()


def sign_up(page: Page, console: Console, email: str, full_name: str = "") -> None:
    """Sign up, then verify the address through the link in the email."""
    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill(email)
    if full_name:
        page.get_by_label("Full name").fill(full_name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text("We sent you a link to verify your email address")).to_be_visible()
    page.goto(console.link_in_mail(email, "/accounts/verify-email/"))
    expect(page.get_by_text("Your email address is verified.")).to_be_visible()


def create_tenant(page: Page, name: str) -> Tenant:
    page.goto("/")
    page.get_by_role("link", name="Create a tenant").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text(f"Created {name}. You are its owner.")).to_be_visible()
    return Tenant.objects.get(name=name)


def sidenav(page: Page, tenant: Tenant, link: str) -> None:
    """Open one of the tenant's pages through the side navigation, starting from its dashboard."""
    if f"/t/{tenant.slug}/" not in page.url:
        page.goto(f"/t/{tenant.slug}/")
    nav = page.get_by_role("navigation", name=tenant.name, exact=True)
    nav.get_by_role("link", name=link, exact=True).click()


def new_ssh_public_key(comment: str) -> str:
    return ed25519_public_key(comment)


def owner_with_tenant(name: str, email: str) -> tuple[Any, Tenant]:
    """A verified user owning a tenant with credit (factories: faster than signing up in the browser)."""
    tenant = TenantFactory(name=name, slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
    user = UserFactory(email=email)
    MembershipFactory(tenant=tenant, user=user, role="owner")
    return user, tenant
