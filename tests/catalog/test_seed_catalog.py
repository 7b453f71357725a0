"""seed_catalog: the starter catalog, with capacity read from sandbox/fleet.yaml; safe to run again."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.catalog.catalog_seed import seed_catalog
from apps.catalog.models import GpuType, Image, InstanceType, Region, RegionCapacity
from tests.instances.helpers import FLEET

pytestmark = pytest.mark.django_db


def pools():
    return {
        (c.region.slug, c.gpu_type.slug if c.gpu_type else None): (c.gpus, c.vcpu, c.memory_gib)
        for c in RegionCapacity.objects.select_related("region", "gpu_type")
    }


def counts():
    return tuple(m.objects.count() for m in (GpuType, InstanceType, Region, RegionCapacity, Image))


def test_capacity_comes_from_the_fleet_file():
    assert seed_catalog(FLEET) == ["us-east-1", "eu-west-1"]

    assert pools() == {
        # 4 nodes of 8 H100, each with 200 allocatable cores and 1750 GiB
        ("us-east-1", "h100-80gb"): (32, 800, 7000),
        ("us-east-1", "a100-80gb"): (32, 992, 7800),
        # one H100 cut into seven MIG 1g.10gb slices
        ("us-east-1", "h100-mig-1g10gb"): (7, 30, 250),
        ("us-east-1", None): (0, 124, 500),
        # the real kubelet nodes: 2 of them, each nominally 2 GPUs (advertised), 2 cores and 4 GiB
        ("us-east-1", "sandbox-cpu"): (4, 4, 8),
        ("eu-west-1", "h100-80gb"): (16, 400, 3500),
        ("eu-west-1", "l40s-48gb"): (16, 248, 2000),
        ("eu-west-1", None): (0, 124, 500),
        ("eu-west-1", "sandbox-cpu"): (2, 2, 4),
    }


def test_the_starter_catalog():
    seed_catalog(FLEET)

    h100x1 = InstanceType.objects.get(slug="gpu-h100x1")
    assert (h100x1.gpu_type.slug, h100x1.gpu_count, h100x1.price_per_hour) == (
        "h100-80gb",
        1,
        Decimal("2.49"),
    )
    cpu = InstanceType.objects.get(slug="cpu-4x")
    assert (cpu.gpu_type, cpu.gpu_count) == (None, 0)
    assert set(InstanceType.objects.values_list("slug", flat=True)) >= {
        "gpu-h100x1", "gpu-h100x2", "gpu-h100x4", "gpu-h100x8", "gpu-a100x1", "gpu-a100x8",
        "gpu-l40sx1", "gpu-l40sx4", "gpu-h100-mig-1g10gb", "cpu-4x", "cpu-16x",
    }  # fmt: skip
    assert set(Image.objects.values_list("slug", flat=True)) == {"cuda-12", "pytorch", "jupyter"}
    for image in Image.objects.all():
        assert set(image.regions.values_list("slug", flat=True)) == {"us-east-1", "eu-west-1"}


def test_running_it_again_changes_nothing():
    seed_catalog(FLEET)
    before_counts, before_pools = counts(), pools()

    seed_catalog(FLEET)

    assert counts() == before_counts
    assert pools() == before_pools


def test_running_it_again_keeps_staff_settings_of_regions():
    seed_catalog(FLEET)
    Region.objects.filter(slug="us-east-1").update(status="maintenance", storage_class="fast")

    seed_catalog(FLEET)

    region = Region.objects.get(slug="us-east-1")
    assert (region.status, region.storage_class) == ("maintenance", "fast")


def test_without_a_fleet_file_there_are_types_but_no_regions():
    assert seed_catalog(None) == []

    assert InstanceType.objects.count() == 12
    assert not Region.objects.exists()
    assert not RegionCapacity.objects.exists()


def test_the_management_command():
    out = StringIO()

    call_command("seed_catalog", "--kubeconfigs", "none", stdout=out)
    call_command("seed_catalog", "--kubeconfigs", "none", stdout=out)

    assert "regions: us-east-1, eu-west-1" in out.getvalue()
    assert RegionCapacity.objects.count() == 9


def test_the_command_connects_regions_from_a_kubeconfig_index(tmp_path):
    kubeconfig = tmp_path / "us.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "us",
                "clusters": [{"name": "us", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "us", "context": {"cluster": "us", "user": "u"}}],
                "users": [{"name": "u", "user": {}}],
            }
        )
    )
    index = tmp_path / "index.json"
    regions = {"us-east-1": {"kubeconfig": str(kubeconfig)}, "nowhere-1": {"kubeconfig": "x"}}
    index.write_text(json.dumps({"regions": regions}))
    out = StringIO()

    call_command("seed_catalog", "--kubeconfigs", str(index), stdout=out)

    assert "connected to clusters: us-east-1" in out.getvalue()
    us_east = Region.objects.get(slug="us-east-1")
    assert us_east.get_kubeconfig() == kubeconfig.read_text()
    assert "127.0.0.1:1" not in us_east.kubeconfig_encrypted  # encrypted at rest
    assert not Region.objects.get(slug="eu-west-1").has_kubeconfig


def test_the_index_may_name_the_operators_and_the_logs_credentials(tmp_path):
    """The sandbox's index: `kubeconfig` is its administrator; the region is connected with the operator's
    restricted identity and the console's logs identity instead."""
    files = {}
    for who in ("admin", "operator", "logs"):
        files[who] = tmp_path / f"{who}.kubeconfig"
        files[who].write_text(
            yaml.safe_dump({"clusters": [{"name": who, "cluster": {"server": "https://127.0.0.1:1"}}]})
        )
    entry = {
        key: str(files[who])
        for key, who in [
            ("kubeconfig", "admin"),
            ("operator_kubeconfig", "operator"),
            ("logs_kubeconfig", "logs"),
        ]
    }
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"regions": {"us-east-1": entry}}))

    call_command("seed_catalog", "--kubeconfigs", str(index), stdout=StringIO())

    us_east = Region.objects.get(slug="us-east-1")
    assert us_east.get_kubeconfig() == files["operator"].read_text()
    assert us_east.get_logs_kubeconfig() == files["logs"].read_text()


def test_the_command_can_leave_regions_unconnected():
    call_command("seed_catalog", "--kubeconfigs", "none", stdout=StringIO())
    assert not any(region.has_kubeconfig for region in Region.objects.all())


def write_kubeconfig(path, *, server="https://127.0.0.1:1", user=None):
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "r",
                "clusters": [{"name": "r", "cluster": {"server": server}}],
                "contexts": [{"name": "r", "context": {"cluster": "r", "user": "u"}}],
                "users": [{"name": "u", "user": user or {}}],
            }
        )
    )
    return str(path)


def test_the_index_refuses_a_kubeconfig_that_runs_code_and_connects_nothing(tmp_path):
    good = write_kubeconfig(tmp_path / "eu.kubeconfig")
    evil = write_kubeconfig(tmp_path / "us.kubeconfig", user={"exec": {"command": "/bin/sh"}})
    index = tmp_path / "index.json"
    index.write_text(
        json.dumps({"regions": {"eu-west-1": {"kubeconfig": good}, "us-east-1": {"kubeconfig": evil}}})
    )

    with pytest.raises(CommandError, match=r"us-east-1 .*users\[0\]\.user\.exec"):
        call_command("seed_catalog", "--kubeconfigs", str(index), stdout=StringIO())

    assert not Region.objects.filter(kubeconfig_encrypted__gt="").exists()


def test_the_index_marks_sandbox_regions_which_alone_may_use_plain_http(tmp_path):
    http = write_kubeconfig(tmp_path / "us.kubeconfig", server="http://127.0.0.1:8080")
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"regions": {"us-east-1": {"kubeconfig": http}}}))

    with pytest.raises(CommandError, match=r"clusters\[0\]\.cluster\.server"):
        call_command("seed_catalog", "--kubeconfigs", str(index), stdout=StringIO())
    assert not Region.objects.get(slug="us-east-1").has_kubeconfig

    index.write_text(json.dumps({"regions": {"us-east-1": {"kubeconfig": http, "sandbox": True}}}))
    call_command("seed_catalog", "--kubeconfigs", str(index), stdout=StringIO())
    region = Region.objects.get(slug="us-east-1")
    assert region.sandbox and region.has_kubeconfig
    assert not Region.objects.get(slug="eu-west-1").sandbox


def test_the_default_index_is_that_of_the_sandbox_instance_the_environment_names(tmp_path, monkeypatch):
    """make run's instance (`default`) unless GPUCLOUD_SANDBOX_INSTANCE names another (pytest sets `test`):
    the demo and the tests connect different clusters (docs/sandbox.md, "Instances")."""
    monkeypatch.setenv("GPUCLOUD_CACHE_DIR", str(tmp_path))
    for name in ("GPUCLOUD_SANDBOX_DIR", "GPUCLOUD_REGION_KUBECONFIGS", "GPUCLOUD_SANDBOX_INSTANCE"):
        monkeypatch.delenv(name, raising=False)
    for instance, directory, port in (("default", "sandbox", 16443), ("test", "sandbox-test", 16543)):
        state = tmp_path / directory
        state.mkdir()
        kubeconfig = write_kubeconfig(state / "kubeconfig", server=f"https://127.0.0.1:{port}")
        entry = {"kubeconfig": kubeconfig, "sandbox": True}
        (state / "sandbox.json").write_text(
            json.dumps({"instance": instance, "regions": {"us-east-1": entry}})
        )

    def server() -> str:
        call_command("seed_catalog", stdout=StringIO())
        config = yaml.safe_load(Region.objects.get(slug="us-east-1").get_kubeconfig())
        return config["clusters"][0]["cluster"]["server"]

    assert server() == "https://127.0.0.1:16443"
    monkeypatch.setenv("GPUCLOUD_SANDBOX_INSTANCE", "test")
    assert server() == "https://127.0.0.1:16543"
    monkeypatch.setenv("GPUCLOUD_SANDBOX_INSTANCE", "../sandbox")  # becomes part of a path: refused
    with pytest.raises(ValueError, match="lowercase letters"):
        call_command("seed_catalog", stdout=StringIO())
