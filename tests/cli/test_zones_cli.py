"""Availability zones in the CLI (docs/networking.md): regions list theirs, one region's availability is
told per zone, and launches, clusters and volumes take --zone."""

from __future__ import annotations

import re

import pytest

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.storage.models import Volume
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.support.factories import region_node

pytestmark = pytest.mark.django_db(transaction=True)


def test_zones_are_listed_and_launches_and_volumes_take_one(cli: Cli, funded: Actor) -> None:
    us = Region.objects.get(slug="us-east-1")
    region_node(us, "a0", zone="us-east-1a")
    region_node(us, "b0", zone="us-east-1b", gpus_requested=8)
    cli.login(funded)

    regions = {line.split()[0]: line for line in cli.ok("regions").stdout.splitlines()[1:]}
    assert "us-east-1a, us-east-1b" in regions["us-east-1"]
    table = cli.ok("instance-types", "--gpu", "h100-80gb", "--region", "us-east-1").stdout
    row = next(line for line in table.splitlines() if line.startswith("gpu-h100x8 "))
    assert row.rstrip().endswith("us-east-1:1 (us-east-1a:1, us-east-1b:0)")

    launched = cli.ok(
        "launch",
        "--region",
        "us-east-1",
        "--type",
        "gpu-h100x1",
        "--image",
        "pytorch",
        "--zone",
        "us-east-1a",
        "--json",
    ).json()
    assert launched["zone"] == "us-east-1a" and Instance.objects.get(pk=launched["id"]).zone == "us-east-1a"
    assert re.search(r"^zone:\s+us-east-1a$", cli.ok("show", launched["id"]).stdout, re.MULTILINE)

    volume = cli.ok(
        "volumes", "create", "data", "--region", "us-east-1", "--size", "10", "--zone", "us-east-1b", "--json"
    ).json()
    assert volume["zone"] == "us-east-1b" and Volume.objects.get(pk=volume["id"]).zone == "us-east-1b"
    refused = cli(
        "launch", "--region", "us-east-1", "--type", "gpu-h100x1", "--image", "pytorch", "--zone", "mars"
    )
    assert refused.returncode != 0 and "zone" in refused.stderr
