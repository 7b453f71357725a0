"""An instance action locks the instance's row and nothing else.

A FOR UPDATE over a query that joins (select_related) locks every joined row: each stop, start or terminate
held its tenant, region and instance type FOR UPDATE until commit. Every action in a region then waited for
the one before, and a launch of the same tenant, whose deferred foreign-key check takes FOR KEY SHARE on the
tenant row at COMMIT, deadlocked against a stop (bench/serve_load.py answered one launch in 700 with 503
`deadlock detected`). Here a second connection tries exactly that key-share lock, without waiting, while
the action's transaction is still open.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction

from apps.instances import services
from apps.instances.models import Instance
from apps.instances.states import Action
from tests.factories import TenantFactory, UserFactory
from tests.support.locks import key_share_refused

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("action", [Action.STOP, Action.TERMINATE])
def test_an_action_leaves_tenant_region_and_type_open_to_foreign_key_checks(
    action: Action, make_instance: Callable[..., Instance]
) -> None:
    user = UserFactory()
    tenant = TenantFactory()
    tenant.memberships.create(user=user, role="owner")
    instance = make_instance(tenant, created_by=user, state="running")
    with transaction.atomic():
        services.instance_act(actor=user, instance=instance, action=action)
        assert key_share_refused("instances_instance", instance.pk)  # the instance itself is held
        assert not key_share_refused("tenants_tenant", instance.tenant_id)
        assert not key_share_refused("catalog_region", instance.region_id)
        assert not key_share_refused("catalog_instancetype", instance.instance_type_id)
