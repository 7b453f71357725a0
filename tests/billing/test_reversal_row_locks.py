"""A credit reversal locks the grant's row, not its tenant's: a FOR UPDATE over a select_related query
locks the joined tenant row too, and every launch or write of that tenant (whose foreign-key checks take
FOR KEY SHARE on the tenant row) would wait for the refund's transaction, or deadlock with it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from apps.billing import reversals
from apps.billing.models import CreditGrant
from tests.factories import TenantFactory
from tests.support.locks import key_share_refused

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_credit_reversal_leaves_the_tenant_open(db: Any) -> None:
    tenant = TenantFactory()
    grant = CreditGrant.objects.create(tenant=tenant, kind="paid", amount=Decimal("50.00"), reason="top-up")
    with transaction.atomic():
        reversals.credit_reversal_settle(
            grant=grant, cause="refund", source_id="re_1", withdrawn=Decimal("50.00"), reason="refunded"
        )
        assert key_share_refused("billing_creditgrant", grant.pk)
        assert not key_share_refused("tenants_tenant", tenant.pk)
