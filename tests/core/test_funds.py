"""The funds port (apps/core/funds.py): billing answers for the apps below it, and with nothing registered
the question fails closed rather than letting storage be used for free."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.core import funds
from apps.core.errors import PaymentRequired
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_billing_answers_through_the_port() -> None:
    broke, funded = TenantFactory(credit=0), TenantFactory()
    with pytest.raises(PaymentRequired):
        funds.require_funds(tenant=broke)
    funds.require_funds(tenant=funded)
    assert (
        funds.funds_exhausted(tenant=broke)
        == "The prepaid balance is used up; add credit to launch or start instances."
    )
    assert funds.funds_exhausted(tenant=funded) is None


def test_nothing_registered_fails_closed(monkeypatch: Any) -> None:
    monkeypatch.setattr(funds, "_registered", None)
    with pytest.raises(ImproperlyConfigured):
        funds.require_funds(tenant=TenantFactory())
    with pytest.raises(ImproperlyConfigured):
        funds.funds_exhausted(tenant=TenantFactory())
