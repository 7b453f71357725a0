"""Tags from the command line against the live server: --tag at launch and creation, `gpucloud tag` to show,
set and remove them, usage by tag, and `gpucloud tag-budgets`."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.billing.models import TagBudget, UsageRecord
from apps.billing.selectors import month_start
from apps.instances.models import Cluster, Instance
from apps.storage.models import Volume
from apps.storage.objects.models import Bucket
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.instances.cluster_helpers import room_for_clusters
from tests.instances.helpers import Catalog
from tests.storage.objects.helpers import bucket_row

pytestmark = pytest.mark.django_db(transaction=True)

LAUNCH = ("launch", "--region", "us-east-1", "--type", "gpu-h100x1", "--image", "pytorch")


def test_instance_tags_at_launch_and_changed_later(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    launched = cli.ok(
        *LAUNCH, "--name", "train-1", "--tag", "Team=ml", "--tag", "project=llm", "--json"
    ).json()
    assert launched["tags"] == {"project": "llm", "team": "ml"}
    assert "tags:" in cli.ok("show", "train-1").stdout
    assert "project=llm,team=ml" in cli.ok("show", "train-1").stdout

    changed = cli.ok("tag", "instance", "train-1", "--tag", "env=prod", "--untag", "project", "--json").json()
    assert changed["tags"] == {"env": "prod", "team": "ml"}
    assert Instance.objects.get(pk=launched["id"]).tags == {"env": "prod", "team": "ml"}
    assert cli.ok("tag", "instance", "train-1").stdout.splitlines() == ["env=prod", "team=ml"]

    refused = cli("tag", "instance", "train-1", "--tag", "bad key=x")
    assert refused.returncode == 1, str(refused)
    assert "tags: Tag 'bad key'" in refused.stderr
    both = cli("tag", "instance", "train-1", "--tag", "env=dev", "--untag", "env")
    assert both.returncode == 1 and "--tag and --untag both name 'env'" in both.stderr
    malformed = cli(*LAUNCH, "--tag", "novalue")
    assert malformed.returncode == 1 and "use KEY=VALUE" in malformed.stderr


def test_cluster_volume_and_bucket_tags(cli: Cli, funded: Actor, catalog: Catalog) -> None:
    room_for_clusters(funded.tenant, catalog.us_east)
    cli.login(funded)
    cli.ok(
        "cluster", "create", "--nodes", "2", "--type", "gpu-h100x8", "--region", "us-east-1",
        "--image", "pytorch", "--name", "llm", "--tag", "team=ml",
    )  # fmt: skip
    cluster = Cluster.objects.get(tenant=funded.tenant, name="llm")
    assert cluster.tags == {"team": "ml"}
    assert cli.ok("tag", "cluster", "llm", "--tag", "team=research", "--json").json()["tags"] == {
        "team": "research"
    }
    assert {tuple(n.tags.items()) for n in Instance.objects.filter(cluster=cluster)} == {
        (("team", "research"),)
    }
    assert "team=research" in cli.ok("cluster", "show", "llm").stdout

    volume = cli.ok(
        "volumes", "create", "data", "--region", "us-east-1", "--size", "10", "--tag", "team=ml", "--json"
    )
    assert volume.json()["tags"] == {"team": "ml"}
    cli.ok("tag", "volume", "data", "--untag", "team")
    assert Volume.objects.get(pk=volume.json()["id"]).tags == {}
    assert cli.ok("tag", "volume", "data").stdout.strip() == "volume data has no tags."

    bucket_row(funded.tenant, name="datasets")
    assert cli.ok("tag", "bucket", "datasets", "--tag", "team=ml", "--json").json()["tags"] == {"team": "ml"}
    assert Bucket.objects.get(tenant=funded.tenant, name="datasets").tags == {"team": "ml"}
    assert "team=ml" in cli.ok("buckets").stdout
    assert cli("tag", "bucket", "nope").returncode == 4


def test_usage_by_tag_and_tag_budgets(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    start = month_start(timezone.now()) + timedelta(minutes=5)
    for n, (amount, tags) in enumerate(
        [("1.000000", {"team": "ml", "env": "prod"}), ("2.000000", {"team": "ml"}), ("4.000000", {})]
    ):
        begin = start + timedelta(minutes=n)
        UsageRecord.objects.create(
            id=f"cli-tag:{n}",
            tenant=funded.tenant,
            resource_type="instance",
            resource_id=f"cli-tag-{n}",
            meter="instance_seconds:gpu-h100x1",
            period=DateTimeTZRange(begin, begin + timedelta(seconds=60), "[)"),
            quantity_seconds=60,
            unit_price_per_hour=Decimal("1.0000"),
            amount=Decimal(amount),
            tags=tags,
        )
    grouped = cli.ok("usage", "--group-by", "tag:team", "--json").json()
    assert [(g["key"], g["amount"]) for g in grouped["results"]] == [("ml", "3.000000"), (None, "4.000000")]
    table = cli.ok("usage", "--group-by", "tag:team").stdout
    assert "by tag:team" in table and "untagged" in table
    filtered = cli.ok("usage", "--tag", "team=ml", "--tag", "env=prod", "--json").json()
    assert filtered["tags"] == {"team": "ml", "env": "prod"} and filtered["total"] == "1.000000"
    assert "tagged env=prod and team=ml" in cli.ok("usage", "--tag", "team=ml", "--tag", "env=prod").stdout
    bad = cli("usage", "--group-by", "region")
    assert bad.returncode == 2 and "tag:KEY" in bad.stderr
    refused = cli("usage", "--group-by", "tag:bad key")
    assert refused.returncode == 1 and "group_by: Tag 'bad key'" in refused.stderr

    created = cli.ok("tag-budgets", "create", "Team=ml", "--amount", "5.00", "--json").json()
    assert (created["key"], created["value"], created["monthly_amount"]) == ("team", "ml", "5.00")
    assert created["month_to_date_spend"] == "3.000000" and created["percent_used"] == "60.0"
    listed = cli.ok("tag-budgets").stdout.splitlines()
    assert listed[0].split() == ["ID", "TAG", "MONTHLY", "SPENT", "USED", "ALERTS"]
    assert listed[1].split()[1:5] == ["team=ml", "5.00", "3.000000", "60.0%"]
    cli.ok("tag-budgets", "update", "team=ml", "--amount", "7.50")
    assert TagBudget.objects.get(pk=created["id"]).monthly_amount == Decimal("7.50")
    duplicate = cli("tag-budgets", "create", "team=ml", "--amount", "1.00")
    assert duplicate.returncode == 8 and "already has a budget" in duplicate.stderr
    cli.ok("tag-budgets", "rm", created["id"])
    assert not TagBudget.objects.filter(tenant=funded.tenant).exists()
    assert cli.ok("tag-budgets").stdout.strip() == "No tag budgets."
    assert cli("tag-budgets", "rm", "team=ml").returncode == 4
