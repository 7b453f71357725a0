"""The catalog, key, token, quota, billing and storage commands against the live server."""

from __future__ import annotations

import pytest

from apps.accounts.models import ApiToken, SshKey
from apps.catalog.models import RegionCapacity
from apps.storage.models import Volume
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.instances.helpers import Catalog, ed25519_public_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_catalog(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    regions = cli.ok("regions").stdout.splitlines()
    assert regions[0].split() == ["REGION", "NAME", "STATUS", "ZONES", "STORAGE"]
    assert [line.split()[0] for line in regions[1:]] == ["us-east-1", "eu-west-1"]
    assert "h100-80gb" in cli.ok("gpu-types").stdout
    assert {i["slug"] for i in cli.ok("images", "--json").json()} == {"cuda-12", "pytorch", "jupyter"}

    h100 = cli.ok("instance-types", "--gpu", "h100-80gb", "--json").json()
    assert {t["slug"] for t in h100} == {"gpu-h100x1", "gpu-h100x2", "gpu-h100x4", "gpu-h100x8"}
    family = {t["slug"] for t in cli.ok("instance-types", "--gpu", "h100", "--json").json()}
    assert family == {t["slug"] for t in h100} | {"gpu-h100-mig-1g10gb"}
    table = cli.ok("instance-types", "--gpu", "h100-80gb", "--region", "eu-west-1", "--available").stdout
    row = next(line for line in table.splitlines() if line.startswith("gpu-h100x8 "))
    assert row.split()[1:3] == ["8x", "h100-80gb"] and row.endswith("eu-west-1:2")
    unknown = cli("instance-types", "--gpu", "z9000")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: Unknown GPU type 'z9000'; known: ")


def test_instance_types_gpu_h100_available(cli: Cli, funded: Actor, catalog: Catalog) -> None:
    """The issue's own example: the H100 family, only what can launch now, in every region."""
    cli.login(funded)
    full = RegionCapacity.objects.filter(gpu_type__slug__in=["h100-mig-1g10gb", "h100-80gb"])
    assert full.filter(region=catalog.us_east, gpu_type__slug="h100-mig-1g10gb").update(gpus=0) == 1
    assert full.filter(region=catalog.eu_west, gpu_type__slug="h100-80gb").update(gpus=0) == 1
    family = ["gpu-h100-mig-1g10gb", "gpu-h100x1", "gpu-h100x2", "gpu-h100x4", "gpu-h100x8"]

    everything = cli.ok("instance-types", "--gpu", "h100", "--json").json()
    assert [t["slug"] for t in everything] == family
    offers = {t["slug"]: {r["region"]: r["available"] for r in t["regions"]} for t in everything}
    assert offers["gpu-h100-mig-1g10gb"] == {"us-east-1": 0}
    assert offers["gpu-h100x8"] == {"us-east-1": 4, "eu-west-1": 0}

    table = cli.ok("instance-types", "--gpu", "h100", "--available").stdout.splitlines()
    assert table[0].split() == ["TYPE", "GPUS", "VCPU", "MEMORY", "DISK", "PRICE/H", "AVAILABLE"]
    rows = {line.split()[0]: line.split()[-1] for line in table[1:]}
    assert rows == {  # no MIG slice left anywhere; the whole GPUs only where they are free
        "gpu-h100x1": f"us-east-1:{offers['gpu-h100x1']['us-east-1']}",
        "gpu-h100x2": f"us-east-1:{offers['gpu-h100x2']['us-east-1']}",
        "gpu-h100x4": f"us-east-1:{offers['gpu-h100x4']['us-east-1']}",
        "gpu-h100x8": "us-east-1:4",
    }
    scripted = cli.ok("instance-types", "--gpu", "h100", "--available", "--json").json()
    assert [(t["slug"], t["regions"]) for t in scripted] == [
        (
            slug,
            [
                {
                    "region": "us-east-1",
                    "available": offers[slug]["us-east-1"],
                    "whole_nodes_free": {},
                    "zones": {},
                }
            ],
        )
        for slug in family[1:]
    ]


def test_ssh_keys_and_tokens(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    public_key = ed25519_public_key("ada@laptop")
    added = cli.ok("ssh-keys", "add", "laptop", "--public-key", public_key, "--json").json()
    assert SshKey.objects.get(pk=added["id"]).name == "laptop"
    assert [k["name"] for k in cli.ok("ssh-keys", "--json").json()] == ["laptop"]
    assert "laptop" in cli.ok("ssh-keys", "ls").stdout
    cli.ok("ssh-keys", "rm", "laptop")
    assert not SshKey.objects.filter(pk=added["id"]).exists()
    assert cli.ok("ssh-keys").stdout.strip() == "No SSH keys."

    created = cli.ok("tokens", "create", "ci", "--scope", "instances:read", "--json").json()
    assert created["token"].startswith("gpc_") and created["scopes"] == ["instances:read"]
    assert cli.ok("ls", GPUCLOUD_TOKEN=created["token"]).stdout.strip() == "No instances."
    assert {t["name"] for t in cli.ok("tokens", "ls", "--json").json()} >= {"ci"}
    cli.ok("tokens", "revoke", "ci")
    assert ApiToken.objects.get(pk=created["id"]).revoked_at is not None
    revoked = cli("ls", GPUCLOUD_TOKEN=created["token"])
    assert revoked.returncode == 3, str(revoked)


def test_quota_usage_and_balance(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    quota = cli.ok("quota", "--json").json()
    assert {"resource": "gpus", "limit": 8, "used": 0} in quota["limits"]
    assert cli.ok("quota").stdout.splitlines()[0].split() == ["RESOURCE", "USED", "LIMIT"]
    assert cli.ok("usage", "--group-by", "instance", "--json").json()["results"] == []
    assert "Total: " in cli.ok("usage").stdout
    balance = cli.ok("balance", "--json").json()
    assert balance["balance"].startswith("1000")
    assert cli.ok("balance").stdout.splitlines()[0].startswith("balance:")


def test_volumes(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    created = cli.ok("volumes", "create", "data", "--region", "us-east-1", "--size", "10", "--json").json()
    assert (created["name"], created["size_gib"]) == ("data", 10)
    listed = cli.ok("volumes").stdout.splitlines()
    assert listed[1].split()[:5] == [created["id"], "data", "us-east-1", "-", "10"]  # no zone yet
    Volume.objects.filter(pk=created["id"]).update(state="available")  # no cluster here to provision it
    resized = cli.ok("volumes", "resize", "data", "--size", "20", "--json").json()
    assert resized["size_gib"] == 20
    deleted = cli.ok("volumes", "rm", created["id"], "--json").json()
    assert deleted["state"] in ("deleting", "deleted")
    missing = cli("volumes", "rm", "nope")
    assert missing.returncode == 4, str(missing)


def test_buckets_and_access_keys(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    bucket = cli.ok("buckets", "create", "cli-data", "--json").json()
    assert bucket["name"] == "cli-data"
    assert [b["name"] for b in cli.ok("buckets", "ls", "--json").json()] == ["cli-data"]
    key = cli.ok("access-keys", "create", "laptop", "--json").json()
    assert key["secret_access_key"] and key["endpoint_url"]
    assert [k["name"] for k in cli.ok("access-keys", "--json").json()] == ["laptop"]
    cli.ok("access-keys", "revoke", "laptop")
    assert cli.ok("access-keys", "--json").json() == []  # revoked keys are not listed
    assert cli.ok("access-keys").stdout.strip() == "No access keys."
    cli.ok("buckets", "rm", "cli-data", "--force")
    assert cli.ok("buckets").stdout.strip() == "No buckets."
