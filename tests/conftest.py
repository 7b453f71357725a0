from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts import scopes
from apps.accounts.models import ApiToken, User
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory, make_token
from tests.support import factories
from tests.support.factories import Catalog, seed

pytest_plugins = ["tests.fixtures.kube"]

# What a test needs beyond PostgreSQL and Redis, marked from the fixtures it uses (directly or through other
# fixtures), so a new test is marked the day it asks for one: `make unit` deselects them all. Tests that need
# the sandbox's build without its fixtures (tests/helm: the helm binary) carry the mark themselves.
MARKS_BY_FIXTURE = {
    "sandbox": "sandbox",  # the Kubernetes sandbox (tests/fixtures/kube.py)
    "stripe_mock_url": "stripe",  # stripe-mock (tests/billing/stripe/conftest.py)
    "s3_server": "s3",  # SeaweedFS (tests/storage/objects/conftest.py)
    "browser": "browser",  # Chromium through Playwright (tests/browser/conftest.py)
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, mark in MARKS_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(getattr(pytest.mark, mark))


@dataclass
class Actor:
    """A user with a membership in a tenant, plus a full-scope token and ready-made clients."""

    user: User
    tenant: Tenant
    membership: Membership
    token: ApiToken
    token_plaintext: str

    def token_client(self, plaintext: str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext or self.token_plaintext}")
        return client

    def session_client(self) -> APIClient:
        client = APIClient()
        client.force_login(self.user)
        return client

    def url(self, suffix: str = "") -> str:
        return f"/api/v1/tenants/{self.tenant.slug}{suffix}"


@pytest.fixture
def make_actor(db: Any) -> Callable[..., Actor]:
    def factory(
        role: str = Role.OWNER,
        tenant: Tenant | None = None,
        token_scopes: tuple[str, ...] = scopes.ALL_SCOPES,
        **user_kwargs: Any,
    ) -> Actor:
        tenant = tenant or TenantFactory()
        user = UserFactory(**user_kwargs)
        membership = MembershipFactory(tenant=tenant, user=user, role=role)
        token, plaintext = make_token(user=user, tenant=tenant, token_scopes=token_scopes)
        return Actor(user=user, tenant=tenant, membership=membership, token=token, token_plaintext=plaintext)

    return factory


@pytest.fixture
def owner(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.OWNER)


@pytest.fixture
def catalog(db: Any) -> Catalog:
    """The starter catalog of sandbox/fleet.yaml (tests/support/factories.py), not connected to any cluster.
    Under a test that asks for transactional_db or live_server, pytest-django makes `db` transactional too."""
    return seed()


@pytest.fixture
def make_instance(catalog: Catalog) -> Callable[..., Any]:
    """Instance rows written directly (no admission), in any state: `factories.make_instance`."""
    return factories.make_instance


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def totp_device(user: User) -> TOTPDevice:
    """The user's confirmed authenticator, made on first use (tests compute its codes with `totp_code`)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)


def totp_code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the user's app shows now, or `steps_ahead` 30-second steps later: django-otp still accepts
    that one (its tolerance) after the current one was used, so a test can log in twice without waiting."""
    calc = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    calc.time = time.time() + steps_ahead * device.step
    return f"{calc.token():0{device.digits}d}"


def login_staff(client: Any, user: User) -> Any:
    """Log a staff user in to a test client the way the console would after their second factor: a confirmed
    authenticator, and the session marked verified with it exactly as django_otp.login does.

    Every test that needs a staff session goes through here, so the two-factor rule is satisfied in one
    place."""
    device = totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def staff_user(db: Any) -> User:
    return UserFactory(is_staff=True, is_superuser=True, email="staff@example.com")
