"""The wallet from the database: credits drawn down by the ledger and by running time not yet in it; burn
rate, runway; credit grants through the service; sign-up and demo credit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.billing import metering, services
from apps.billing.models import CreditGrant
from apps.billing.selectors import wallet_of
from apps.core.errors import Conflict, InvalidInput
from apps.storage import services as storage_services
from apps.storage.models import VolumeEvent
from apps.tenants import services as tenant_services
from apps.tenants.models import Tenant
from tests.billing.wallet_helpers import grant, launch, minute_aligned, run_since, usage
from tests.factories import TenantFactory, UserFactory
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def broke(make_actor):
    seed()
    return make_actor(tenant=TenantFactory(credit=0))


def test_balance_is_credits_minus_rated_usage(broke):
    now = minute_aligned()
    grant(broke.tenant, "10.00")
    usage(broke.tenant, "1.234567", end=now - timedelta(hours=2))
    usage(broke.tenant, "0.000001", end=now - timedelta(hours=1))
    w = wallet_of(broke.tenant, now)
    assert (w.balance, w.credits, w.usage_total) == (D("8.765432"), D("10.00"), D("1.234568"))
    assert w.burn_rate_per_hour == 0 and w.runway_seconds is None
    assert w.mode == "prepaid"


def test_running_time_not_yet_in_the_ledger_counts_and_metering_does_not_change_the_balance(broke):
    grant(broke.tenant, "10.00")
    now = minute_aligned()
    instance = run_since(launch(broke), now - timedelta(hours=1))

    before = wallet_of(broke.tenant, now)
    assert before.usage_total == D("2.490000")  # one hour of gpu-h100x1 at 2.49, all in the open window
    assert before.balance == D("7.510000")
    assert before.burn_rate_per_hour == D("2.4900")
    assert before.runway_seconds == int(D("7.51") * 3600 / D("2.49"))  # 10857 s

    assert metering.meter_instance(instance, now=now) == 1  # to the last hourly checkpoint
    after = wallet_of(broke.tenant, now)
    assert (after.balance, after.usage_total) == (before.balance, before.usage_total)

    # Half a minute later: the closed rows plus 30 s of the open window.
    later = wallet_of(broke.tenant, now + timedelta(seconds=30))
    assert later.balance == D("7.510000") - D("0.020750")


def test_an_expiring_promotion_takes_only_its_unused_remainder(broke):
    now = minute_aligned()
    grant(broke.tenant, "5.00", at=now - timedelta(days=3), expires_at=now - timedelta(days=1))
    grant(broke.tenant, "20.00", at=now - timedelta(days=3), kind="paid")
    usage(broke.tenant, "3.00", end=now - timedelta(days=2))  # drawn from the promotion, expiring first
    usage(broke.tenant, "1.00", end=now - timedelta(hours=1))  # after the expiry: from the paid credit
    w = wallet_of(broke.tenant, now)
    assert w.credits == D("23.00")  # 2.00 of the promotion expired unused
    assert w.balance == D("19.00") == w.credits - w.usage_total


def test_wallet_queries_do_not_grow_with_grants_or_instances(broke):
    now = minute_aligned()

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            wallet_of(broke.tenant, now)
        return len(ctx.captured_queries)

    grant(broke.tenant, "100.00")
    run_since(launch(broke, name="one"), now - timedelta(minutes=5))
    first = count()
    for n in range(3):
        grant(broke.tenant, "1.00", expires_at=now - timedelta(hours=n + 1))
        run_since(launch(broke, name=f"more-{n}"), now - timedelta(minutes=3))
    assert count() == first


def test_credit_grant_create_is_idempotent_on_the_external_id(broke):
    staff = UserFactory(is_staff=True)
    first = services.credit_grant_create(
        tenant=broke.tenant, kind="paid", amount="25.00", reason="Top-up", external_id="cs_123", actor=staff
    )
    again = services.credit_grant_create(
        tenant=broke.tenant, kind="paid", amount="25.00", reason="Top-up", external_id="cs_123"
    )
    assert again.pk == first.pk
    assert CreditGrant.objects.filter(tenant=broke.tenant).count() == 1
    assert AuditEvent.objects.filter(tenant=broke.tenant, action="billing.credit_grant").count() == 1
    with pytest.raises(Conflict):
        services.credit_grant_create(
            tenant=TenantFactory(credit=0), kind="paid", amount="25.00", reason="x", external_id="cs_123"
        )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "1.005"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"kind": "gift"}, "kind"),
        ({"kind": "paid", "expires_at": "soon"}, "expires_at"),
    ],
)
def test_credit_grant_create_refuses_bad_input(broke, kwargs, field):
    args = {"tenant": broke.tenant, "kind": "promotional", "amount": "1.00", "reason": "x", **kwargs}
    if args.get("expires_at") == "soon":
        from django.utils import timezone

        args["expires_at"] = timezone.now() + timedelta(days=1)
    with pytest.raises(InvalidInput) as exc:
        services.credit_grant_create(**args)
    assert field in exc.value.fields


def test_new_tenants_get_the_signup_credit(settings):
    user = UserFactory()
    settings.BILLING_SIGNUP_CREDIT = "0"
    none = tenant_services.tenant_create(user=user, name="Nothing")
    assert not CreditGrant.objects.filter(tenant=none).exists()
    settings.BILLING_SIGNUP_CREDIT = "5.00"
    some = tenant_services.tenant_create(user=user, name="Something")
    assert list(CreditGrant.objects.filter(tenant=some).values_list("kind", "amount")) == [
        ("promotional", D("5.00"))
    ]


def test_seed_demo_grants_the_demo_tenant_100_once(settings):
    settings.BILLING_SIGNUP_CREDIT = "0"
    call_command("seed_demo", password="demo-password-123", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("seed_demo", password="demo-password-123", stdout=open("/dev/null", "w"))  # noqa: SIM115
    demo = Tenant.objects.get(slug="demo")
    assert list(CreditGrant.objects.filter(tenant=demo).values_list("kind", "amount")) == [
        ("promotional", D("100.00"))
    ]
    assert wallet_of(demo).balance == D("100.00")


def test_live_volumes_count_in_the_burn_rate_and_the_open_usage_without_double_counting(broke, settings):
    settings.VOLUME_PRICE_PER_GIB_HOUR = D("0.0002")
    grant(broke.tenant, "10.00")
    now = minute_aligned()
    volume = storage_services.volume_create(
        actor=broke.user, tenant=broke.tenant, name="data", size_gib=180, region="us-east-1"
    )
    VolumeEvent.objects.filter(volume=volume, name="created").update(created_at=now - timedelta(hours=1))
    failed = storage_services.volume_create(
        actor=broke.user, tenant=broke.tenant, name="lost", size_gib=500, region="us-east-1"
    )
    storage_services.volume_observe(volume_id=failed.pk, observation="lost", message="Lost.")
    VolumeEvent.objects.filter(volume=failed).update(created_at=now - timedelta(hours=2))

    before = wallet_of(broke.tenant, now)
    # 180 GiB at 0.0002 per GiB-hour; the failed volume is no longer billed (its bill ended at the loss).
    assert before.burn_rate_per_hour == D("0.0360")
    assert before.usage_total == D("0.036000")  # the hour since the creation, none of it metered yet
    assert before.balance == D("9.964000")
    assert before.runway_seconds == int(D("9.964") * 3600 / D("0.036"))

    # With an instance running too, both add up.
    run_since(launch(broke), now - timedelta(hours=1))
    both = wallet_of(broke.tenant, now)
    assert both.burn_rate_per_hour == D("2.4900") + D("0.0360")

    # Metering moves the closed windows into the ledger: the wallet does not change.
    assert metering.meter_all(now=now) > 0
    after = wallet_of(broke.tenant, now)
    assert (after.balance, after.usage_total, after.burn_rate_per_hour) == (
        both.balance,
        both.usage_total,
        both.burn_rate_per_hour,
    )
    # Deleted, the volume stops burning.
    storage_services.volume_delete(actor=broke.user, volume=volume)
    assert wallet_of(broke.tenant, now).burn_rate_per_hour == D("2.4900")
