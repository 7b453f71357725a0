"""Bad input for every launch field: 400, the field named in error.fields, and no instance created."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts import services as account_services
from apps.catalog.models import Image, ImagePolicy, InstanceType
from apps.instances.models import Instance
from apps.tenants.roles import Role
from tests.instances.helpers import ed25519_public_key

pytestmark = pytest.mark.django_db


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] in ("invalid", "parse_error"), error
    named = [name for name in error["fields"] if name == field or name.startswith(f"{field}.")]
    assert named, f"{field} not named in {error['fields']}"
    assert not Instance.objects.exists()


INVALID = {
    # name
    "name: invalid characters": ("name", {"name": "train_1"}),
    "name: uppercase": ("name", {"name": "Train-1"}),
    "name: too long": ("name", {"name": "a" * 64}),
    "name: leading hyphen": ("name", {"name": "-train"}),
    "name: trailing hyphen": ("name", {"name": "train-"}),
    "name: blank": ("name", {"name": ""}),
    "name: not a string": ("name", {"name": ["train"]}),
    # instance_type
    "instance_type: unknown": ("instance_type", {"instance_type": "gpu-b200x1"}),
    "instance_type: wrong type": ("instance_type", {"instance_type": {"slug": "gpu-h100x1"}}),
    "instance_type: missing": ("instance_type", {"instance_type": None}),
    # region
    "region: unknown": ("region", {"region": "mars-1"}),
    "region: wrong type": ("region", {"region": ["us-east-1"]}),
    # image (the default policy forbids custom images)
    "image: unknown slug": ("image", {"image": "tensorflow"}),
    "image: custom reference refused": ("image", {"image": "ghcr.io/acme/trainer:1.0"}),
    "image: too long": ("image", {"image": "a" * 256}),
    # ssh_key_ids
    "ssh_key_ids: not a list": ("ssh_key_ids", {"ssh_key_ids": "4f1c1d2e-0000-4000-8000-000000000000"}),
    "ssh_key_ids: bad uuid": ("ssh_key_ids", {"ssh_key_ids": ["not-a-uuid"]}),
    "ssh_key_ids: unknown": ("ssh_key_ids", {"ssh_key_ids": ["4f1c1d2e-0000-4000-8000-000000000000"]}),
    "ssh_key_ids: too many": (
        "ssh_key_ids",
        {"ssh_key_ids": [f"4f1c1d2e-0000-4000-8000-{n:012d}" for n in range(21)]},
    ),
    # env
    "env: not an object": ("env", {"env": ["A=B"]}),
    "env: a string": ("env", {"env": "A=B"}),
    "env: bad name": ("env", {"env": {"1ABC": "x"}}),
    "env: name with a dash": ("env", {"env": {"MY-VAR": "x"}}),
    "env: reserved GPUCLOUD_": ("env", {"env": {"GPUCLOUD_TOKEN": "x"}}),
    "env: reserved NVIDIA_": ("env", {"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}),
    "env: reserved, lowercase": ("env", {"env": {"nvidia_driver_capabilities": "all"}}),
    "env: reserved LD_PRELOAD": ("env", {"env": {"LD_PRELOAD": "/home/u/hook.so"}}),
    "env: reserved LD_LIBRARY_PATH": ("env", {"env": {"LD_LIBRARY_PATH": "/home/u/lib"}}),
    "env: reserved LD_, lowercase": ("env", {"env": {"ld_audit": "/home/u/a.so"}}),
    "env: number value": ("env", {"env": {"EPOCHS": 5}}),
    "env: boolean value": ("env", {"env": {"DEBUG": True}}),
    "env: null value": ("env", {"env": {"DEBUG": None}}),
    "env: object value": ("env", {"env": {"CONFIG": {"a": 1}}}),
    "env: too many": ("env", {"env": {f"VAR_{n}": "x" for n in range(65)}}),
    "env: value too long": ("env", {"env": {"BLOB": "x" * 4097}}),
    "env: NUL in value": ("env", {"env": {"A": "x\x00y"}}),
    # command
    "command: not a list": ("command", {"command": "python train.py"}),
    "command: numbers": ("command", {"command": ["sleep", 10]}),
    "command: objects": ("command", {"command": [{"run": "x"}]}),
    "command: too many items": ("command", {"command": ["x"] * 65}),
    "command: item too long": ("command", {"command": ["x" * 4097]}),
    # timers
    "auto_stop_after: below 60": ("auto_stop_after", {"auto_stop_after": 59}),
    "auto_stop_after: above max": ("auto_stop_after", {"auto_stop_after": 90 * 24 * 3600 + 1}),
    "auto_stop_after: not an int": ("auto_stop_after", {"auto_stop_after": "an hour"}),
    "auto_stop_after: a fraction": ("auto_stop_after", {"auto_stop_after": 90.5}),
    "auto_stop_after: a boolean": ("auto_stop_after", {"auto_stop_after": True}),
    "max_runtime: below 60": ("max_runtime", {"max_runtime": 0}),
    "max_runtime: negative": ("max_runtime", {"max_runtime": -3600}),
    "max_runtime: above max": ("max_runtime", {"max_runtime": 10**9}),
    "max_runtime: not an int": ("max_runtime", {"max_runtime": [3600]}),
    # unknown fields
    "unknown field": ("gpus", {"gpus": 8}),
    "unknown field, typo": ("sshkey_ids", {"sshkey_ids": []}),
}


@pytest.mark.parametrize(("field", "overrides"), list(INVALID.values()), ids=list(INVALID))
def test_bad_input_is_refused_naming_the_field(tenant_owner, launch, field, overrides):
    assert_refused(launch(tenant_owner, **overrides), field)


def test_malformed_json_is_a_400(tenant_owner, catalog):
    response = tenant_owner.token_client().post(
        tenant_owner.url("/instances"), '{"instance_type": "gpu-h100x1",', content_type="application/json"
    )

    assert response.status_code == 400
    assert "error" in response.json()
    assert not Instance.objects.exists()


def test_a_json_array_body_is_a_400(tenant_owner, catalog):
    response = tenant_owner.token_client().post(tenant_owner.url("/instances"), [1, 2], format="json")

    assert response.status_code == 400
    assert not Instance.objects.exists()


def test_a_live_name_cannot_be_used_twice(tenant_owner, launch):
    assert launch(tenant_owner, name="train").status_code == 201

    response = launch(tenant_owner, name="train")

    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    assert Instance.objects.count() == 1


def test_a_terminated_instance_name_can_be_reused(tenant_owner, launch, make_instance):
    make_instance(tenant_owner.tenant, created_by=tenant_owner.user, name="train", state="terminated")

    response = launch(tenant_owner, name="train")

    assert response.status_code == 201
    assert Instance.objects.filter(name="train").count() == 2


def test_names_are_unique_per_tenant_only(tenant_owner, make_actor, launch):
    other = make_actor(Role.OWNER)
    assert launch(other, name="train").status_code == 201

    assert launch(tenant_owner, name="train").status_code == 201


def test_an_inactive_instance_type_is_refused(tenant_owner, launch):
    InstanceType.objects.filter(slug="gpu-h100x1").update(active=False)

    assert_refused(launch(tenant_owner), "instance_type")


def test_an_image_not_offered_in_the_region_is_refused(tenant_owner, launch, catalog):
    image = Image.objects.create(slug="eu-only", name="EU only", reference="nvcr.io/nvidia/cuda:12.4.1-base")
    image.regions.add(catalog.eu_west)

    response = launch(tenant_owner, image="eu-only")

    assert_refused(response, "image")
    assert "us-east-1" in response.json()["error"]["fields"]["image"][0]
    assert launch(tenant_owner, image="eu-only", region="eu-west-1").status_code == 201


def test_an_inactive_image_is_refused(tenant_owner, launch):
    Image.objects.filter(slug="pytorch").update(active=False)

    assert_refused(launch(tenant_owner), "image")


@pytest.fixture
def custom_images():
    policy = ImagePolicy.current()
    policy.allow_custom_images = True
    policy.allowed_registries = ["ghcr.io", "docker.io", "registry.example.com:5000"]
    policy.save()
    return policy


@pytest.mark.parametrize(
    "reference",
    [
        "ghcr.io/acme/trainer:1.0",
        "ubuntu",
        "library/ubuntu:24.04",
        "registry.example.com:5000/a/b@sha256:" + "a" * 64,
    ],
)
def test_custom_images_are_allowed_when_the_policy_allows(tenant_owner, launch, custom_images, reference):
    response = launch(tenant_owner, image=reference)

    assert response.status_code == 201, response.json()
    assert response.json()["image"] == reference
    assert Instance.objects.get().image is None


@pytest.mark.parametrize(
    "reference",
    ["Ghcr.io/Acme/Trainer", "acme/trainer:", "acme//trainer", "acme/trainer@sha256:abc", "-acme/x", "a b"],
)
def test_invalid_custom_references_are_refused(tenant_owner, launch, custom_images, reference):
    assert_refused(launch(tenant_owner, image=reference), "image")


def test_custom_images_only_from_allowed_registries(tenant_owner, launch, custom_images):
    custom_images.allowed_registries = ["ghcr.io"]
    custom_images.save()

    response = launch(tenant_owner, image="quay.io/acme/trainer:1.0")
    assert_refused(response, "image")
    assert "quay.io" in response.json()["error"]["fields"]["image"][0]
    assert_refused(launch(tenant_owner, image="ubuntu:24.04"), "image")  # docker.io is not ghcr.io

    assert launch(tenant_owner, image="ghcr.io/acme/trainer:1.0").status_code == 201


@pytest.mark.parametrize("reference", ["ghcr.io/acme/trainer:1.0", "ubuntu:24.04"])
def test_an_empty_allowlist_allows_no_registry(tenant_owner, launch, custom_images, reference):
    custom_images.allowed_registries = []
    custom_images.save()

    response = launch(tenant_owner, image=reference)

    assert_refused(response, "image")
    assert "no registry" in response.json()["error"]["fields"]["image"][0]
    assert launch(tenant_owner, image="pytorch").status_code == 201  # curated images are unaffected


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("localhost:5000/a/b:1", "localhost"),
        ("localhost/a/b:1", "localhost"),
        ("registry.localhost/a/b:1", "localhost"),
        ("127.0.0.1:5000/a/b:1", "IP address"),
        ("169.254.169.254/latest/meta-data:1", "IP address"),
        ("10.96.0.10/a/b", "IP address"),
        ("127.1:5000/a/b", "IP address"),
        ("2130706433:5000/a/b", "IP address"),
        ("0x7f000001:5000/a/b", "IP address"),
    ],
)
def test_registries_given_as_ip_addresses_or_localhost_are_refused_even_when_listed(
    tenant_owner, launch, custom_images, reference, says
):
    host = reference.split("/", 1)[0]
    ImagePolicy.objects.filter(pk=custom_images.pk).update(allowed_registries=[host, "docker.io"])

    response = launch(tenant_owner, image=reference)

    assert_refused(response, "image")
    assert says in response.json()["error"]["fields"]["image"][0]


def test_another_tenants_ssh_key_is_refused(tenant_owner, make_actor, launch):
    other = make_actor(Role.OWNER)
    key = account_services.ssh_key_create(
        actor=other.user, tenant=other.tenant, name="theirs", public_key=ed25519_public_key()
    )

    assert_refused(launch(tenant_owner, ssh_key_ids=[str(key.pk)]), "ssh_key_ids")


def test_another_members_private_ssh_key_is_refused(tenant_owner, make_actor, launch):
    colleague = make_actor(Role.MEMBER, tenant=tenant_owner.tenant)
    key = account_services.ssh_key_create(
        actor=colleague.user,
        tenant=tenant_owner.tenant,
        name="colleague",
        public_key=ed25519_public_key(),
        private=True,
    )

    assert_refused(launch(tenant_owner, ssh_key_ids=[str(key.pk)]), "ssh_key_ids")
    assert launch(colleague, ssh_key_ids=[str(key.pk)]).status_code == 201


def test_shared_and_own_private_keys_are_accepted(tenant_owner, ssh_key, launch):
    mine = account_services.ssh_key_create(
        actor=tenant_owner.user,
        tenant=tenant_owner.tenant,
        name="mine",
        public_key=ed25519_public_key(),
        private=True,
    )

    response = launch(tenant_owner, ssh_key_ids=[str(ssh_key.pk), str(mine.pk)])

    assert response.status_code == 201
    assert sorted(response.json()["ssh_key_ids"]) == sorted([str(ssh_key.pk), str(mine.pk)])


def test_values_at_the_limits_are_accepted(tenant_owner, launch):
    response = launch(
        tenant_owner,
        name="a" * 63,
        env={f"VAR_{n}": "x" * 4096 for n in range(63)} | {"_EMPTY": ""},
        command=["x" * 4096] * 64,
        auto_stop_after=60,
        max_runtime=90 * 24 * 3600,
    )

    assert response.status_code == 201, response.json()
    assert len(response.json()["env_names"]) == 64


def test_a_curated_image_not_offered_in_the_region_is_refused(tenant_owner, launch, catalog):
    image = Image.objects.get(slug="pytorch")
    image.regions.remove(catalog.us_east)
    response = launch(tenant_owner, image="pytorch", region="us-east-1")
    assert_refused(response, "image")
    assert "not offered in region 'us-east-1'" in response.json()["error"]["message"]
    assert launch(tenant_owner, image="pytorch", region="eu-west-1").status_code == 201
