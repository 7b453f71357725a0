"""Tags in the console: the create forms take them (one key=value a line), each resource's page shows them
and links to their edit page, which saves the whole set through the service (the API's refusals on the tags
field); a cluster's nodes follow it; the usage page groups and filters by tag; the tag budgets page creates,
changes and deletes budgets. Other tenants' objects are 404, roles without the permission 403."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.models import TagBudget, UsageRecord
from apps.billing.selectors import month_start
from apps.instances.models import Instance
from apps.storage.models import Volume
from apps.storage.objects.models import Bucket
from apps.tenants.roles import Role
from tests.console.helpers import client_for, cluster_rows, make_instance, page
from tests.factories import TenantFactory
from tests.storage.objects.helpers import bucket_row
from tests.support.factories import volume_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    return make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))


def text(response: Any) -> str:
    return response.content.decode()


# --- create forms ----------------------------------------------------------------------------------------


def test_launch_takes_tags_and_refuses_bad_ones_on_the_field(owner: Any) -> None:
    client = client_for(owner.user)
    form = {"region": "us-east-1", "instance_type": "gpu-h100x1", "image": "pytorch", "name": "tagged"}
    refused = client.post(page("launch", owner.tenant), {**form, "tags": "team=ml\nbad key=x"})
    assert refused.status_code == 400
    assert "Tag &#x27;bad key&#x27;" in text(refused) and 'id="launch-tags-error"' in text(refused)
    assert "bad key=x" in text(refused)  # what was typed is shown back
    assert not Instance.objects.filter(tenant=owner.tenant).exists()

    response = client.post(page("launch", owner.tenant), {**form, "tags": "Team = ml\r\nproject=llm\r\n"})
    assert response.status_code == 302
    assert Instance.objects.get(tenant=owner.tenant, name="tagged").tags == {"team": "ml", "project": "llm"}


def test_volume_and_bucket_forms_take_tags(owner: Any) -> None:
    client = client_for(owner.user)
    response = client.post(
        page("volumes", owner.tenant),
        {"name": "data", "region": "us-east-1", "size_gib": "10", "tags": "team=ml"},
    )
    assert response.status_code == 302
    assert Volume.objects.get(tenant=owner.tenant, name="data").tags == {"team": "ml"}
    refused = client.post(page("buckets", owner.tenant), {"name": "tagged", "tags": "gpucloud=x"})
    assert refused.status_code == 400 and "reserved for the platform" in text(refused)
    assert not Bucket.objects.filter(tenant=owner.tenant).exists()


# --- a resource's page and its tags page -----------------------------------------------------------------


def test_an_instance_page_shows_its_tags_and_the_edit_page_replaces_them(owner: Any) -> None:
    instance = make_instance(
        owner.tenant, created_by=owner.user, name="trainer", tags={"team": "ml", "old": "1"}
    )
    client = client_for(owner.user)
    detail = text(client.get(page("instance_detail", owner.tenant, instance.pk)))
    assert "<code>old=1</code>" in detail and "<code>team=ml</code>" in detail
    edit_url = page("instance_tags", owner.tenant, instance.pk)
    assert f'href="{edit_url}"' in detail
    form = text(client.get(edit_url))
    assert "old=1\nteam=ml</textarea>" in form

    response = client.post(edit_url, {"tags": "team=research\nenv=prod"})
    assert response.status_code == 302 and response.url == page("instance_detail", owner.tenant, instance.pk)
    instance.refresh_from_db()
    assert instance.tags == {"team": "research", "env": "prod"}
    audit = AuditEvent.objects.get(tenant=owner.tenant, action="instance.tags")
    assert audit.changes["tags"]["to"] == {"env": "prod", "team": "research"}

    refused = client.post(edit_url, {"tags": "x=" + "v" * 256})
    assert refused.status_code == 400 and "at most 255 characters" in text(refused)
    assert 'aria-invalid="true"' in text(refused)
    instance.refresh_from_db()
    assert instance.tags == {"team": "research", "env": "prod"}
    # An empty box removes every tag.
    assert client.post(edit_url, {"tags": ""}).status_code == 302
    instance.refresh_from_db()
    assert instance.tags == {}


def test_a_clusters_tags_go_to_its_nodes_and_a_node_page_points_at_the_cluster(owner: Any) -> None:
    cluster = cluster_rows(owner.tenant, created_by=owner.user, name="gang")
    client = client_for(owner.user)
    assert client.post(page("cluster_tags", owner.tenant, cluster.pk), {"tags": "team=ml"}).status_code == 302
    nodes = list(Instance.objects.filter(cluster=cluster))
    assert [n.tags for n in nodes] == [{"team": "ml"}] * len(nodes)
    assert "<code>team=ml</code>" in text(client.get(page("cluster_detail", owner.tenant, cluster.pk)))

    node_page = text(client.get(page("instance_detail", owner.tenant, nodes[0].pk)))
    assert "change them on the cluster" in node_page
    assert page("instance_tags", owner.tenant, nodes[0].pk) not in node_page
    refused = client.post(page("instance_tags", owner.tenant, nodes[0].pk), {"tags": "team=x"})
    assert refused.status_code == 409 and "change them on the cluster" in text(refused)


def test_volume_and_bucket_tags_pages(owner: Any) -> None:
    volume = volume_row(owner.tenant, name="data", state="available", created_by=owner.user)
    bucket_row(owner.tenant, name="datasets", created_by=owner.user)
    client = client_for(owner.user)
    assert client.post(page("volume_tags", owner.tenant, volume.pk), {"tags": "team=ml"}).status_code == 302
    volume.refresh_from_db()
    assert volume.tags == {"team": "ml"}
    assert "<code>team=ml</code>" in text(client.get(page("volume_detail", owner.tenant, volume.pk)))
    assert client.post(page("bucket_tags", owner.tenant, "datasets"), {"tags": "env=dev"}).status_code == 302
    assert Bucket.objects.get(tenant=owner.tenant, name="datasets").tags == {"env": "dev"}
    assert "<code>env=dev</code>" in text(client.get(page("bucket_detail", owner.tenant, "datasets")))


def test_another_tenants_object_is_a_404_and_a_viewer_gets_403(
    owner: Any, make_actor: Callable[..., Any]
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, name="trainer", tags={"team": "ml"})
    stranger = make_actor(Role.OWNER)
    url = page("instance_tags", owner.tenant, instance.pk)
    assert client_for(stranger.user).post(url, {"tags": "team=x"}).status_code == 404
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    assert client_for(viewer.user).post(url, {"tags": "team=x"}).status_code == 403
    detail = text(client_for(viewer.user).get(page("instance_detail", owner.tenant, instance.pk)))
    assert "<code>team=ml</code>" in detail and url not in detail
    instance.refresh_from_db()
    assert instance.tags == {"team": "ml"}


# --- usage and tag budgets -------------------------------------------------------------------------------


def _rows(tenant: Any) -> None:
    start = month_start(timezone.now()) + timedelta(minutes=5)
    for n, (amount, tags) in enumerate(
        [("1.000000", {"team": "ml", "env": "prod"}), ("2.000000", {"team": "ml"}), ("4.000000", {})]
    ):
        begin = start + timedelta(minutes=n)
        UsageRecord.objects.create(
            id=f"console-tag:{tenant.pk}:{n}",
            tenant=tenant,
            resource_type="instance",
            resource_id=f"console-tag-{n}",
            meter="instance_seconds:gpu-h100x1",
            period=DateTimeTZRange(begin, begin + timedelta(seconds=60), "[)"),
            quantity_seconds=60,
            unit_price_per_hour=Decimal("1.0000"),
            amount=Decimal(amount),
            tags=tags,
        )


def test_the_usage_page_groups_and_filters_by_tag(owner: Any) -> None:
    _rows(owner.tenant)
    client = client_for(owner.user)
    url = page("usage", owner.tenant)
    grouped = client.get(url, {"group": "tag", "tag_key": "team"})
    assert grouped.status_code == 200
    assert [(r["key"], r["amount"]) for r in grouped.context["report"]["results"]] == [
        ("ml", Decimal("3.000000")),
        (None, Decimal("4.000000")),
    ]
    assert "<em>untagged</em>" in text(grouped)
    filtered = client.get(url, {"tags": "env=prod"})
    assert filtered.context["report"]["total"] == Decimal("1.000000")
    assert "tagged env=prod" in text(filtered)
    refused = client.get(url, {"group": "tag", "tag_key": "bad key"})
    assert refused.status_code == 400 and 'id="usage-tag-key-error"' in text(refused)
    assert client.get(url, {"from": "yesterday"}).status_code == 400


def test_tag_budgets_are_created_changed_and_deleted(owner: Any) -> None:
    _rows(owner.tenant)
    client = client_for(owner.user)
    url = page("tag_budgets", owner.tenant)
    refused = client.post(url, {"key": "bad key", "value": "ml", "monthly_amount": "5.00"})
    assert refused.status_code == 400 and 'id="budget-key-error"' in text(refused)
    assert client.post(url, {"key": "Team", "value": "ml", "monthly_amount": "5.00"}).status_code == 302
    budget = TagBudget.objects.get(tenant=owner.tenant)
    assert (budget.key, budget.value, budget.monthly_amount) == ("team", "ml", Decimal("5.00"))
    listed = client.get(url)
    assert listed.context["rows"][0]["spend"] == Decimal("3.000000")
    assert "60.0%" in text(listed)

    update = page("tag_budget_update", owner.tenant, budget.pk)
    assert client.post(update, {"monthly_amount": "6.00"}).status_code == 302
    assert client.post(update, {"monthly_amount": "-1"}).status_code == 400
    budget.refresh_from_db()
    assert budget.monthly_amount == Decimal("6.00")

    delete = page("tag_budget_delete", owner.tenant, budget.pk)
    assert "Delete the budget of tag team=ml?" in text(client.get(delete))
    assert client.post(delete).status_code == 302
    assert not TagBudget.objects.filter(tenant=owner.tenant).exists()


def test_tag_budget_pages_follow_the_billing_roles(owner: Any, make_actor: Callable[..., Any]) -> None:
    budget = TagBudget.objects.create(tenant=owner.tenant, key="team", value="ml", monthly_amount=5)
    admin = client_for(make_actor(Role.ADMIN, tenant=owner.tenant).user)
    member = client_for(make_actor(Role.MEMBER, tenant=owner.tenant).user)
    assert admin.get(page("tag_budgets", owner.tenant)).status_code == 200
    assert admin.post(page("tag_budget_delete", owner.tenant, budget.pk)).status_code == 403
    assert member.get(page("tag_budgets", owner.tenant)).status_code == 403
    assert member.get(page("usage", owner.tenant)).status_code == 403
    stranger = client_for(make_actor(Role.OWNER).user)
    assert stranger.post(page("tag_budget_delete", owner.tenant, budget.pk)).status_code == 404
    assert TagBudget.objects.filter(pk=budget.pk).exists()
