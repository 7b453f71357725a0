"""The SSH key API: add, list, show and delete; shared and private keys; audit rows."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from apps.accounts.models import SshKey
from apps.audit.models import AuditEvent
from apps.tenants.roles import Role
from tests.accounts.test_ssh_key_parser import expected_fingerprint
from tests.instances.helpers import ed25519_public_key

pytestmark = pytest.mark.django_db


def add(actor, **body):
    body.setdefault("name", "laptop")
    body.setdefault("public_key", ed25519_public_key())
    return actor.token_client().post(actor.url("/ssh-keys"), body, format="json")


def test_add_a_shared_key(owner):
    public_key = ed25519_public_key("ada@laptop")

    response = add(owner, public_key=f"  {public_key}\n")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "laptop"
    assert body["key_type"] == "ed25519"
    assert body["bits"] == 256
    assert body["fingerprint"] == expected_fingerprint(public_key)
    assert body["public_key"] == public_key
    assert body["private"] is False
    assert body["created_by"] == owner.user.email
    key = SshKey.objects.get(pk=body["id"])
    assert key.tenant == owner.tenant
    assert key.user is None
    audit = AuditEvent.objects.get(action="ssh_key.create")
    assert audit.tenant == owner.tenant
    assert audit.target_id == str(key.pk)
    assert audit.changes["fingerprint"] == body["fingerprint"]


def test_add_an_rsa_key(owner):
    line = (
        rsa.generate_private_key(65537, 4096)
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )

    response = add(owner, public_key=line.decode())

    assert response.status_code == 201
    assert (response.json()["key_type"], response.json()["bits"]) == ("rsa", 4096)


def test_the_same_key_twice_in_a_tenant_is_refused(owner, make_actor):
    public_key = ed25519_public_key()
    assert add(owner, public_key=public_key).status_code == 201

    response = add(owner, name="again", public_key=public_key.rsplit(" ", 1)[0] + " other-comment")

    assert response.status_code == 400
    assert "public_key" in response.json()["error"]["fields"]
    assert SshKey.objects.count() == 1
    # Another tenant may hold the same public key.
    assert add(make_actor(Role.OWNER), public_key=public_key).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"public_key": "ssh-ed25519 not-a-key"}, "public_key"),
        (
            {"public_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END"},
            "public_key",
        ),
        ({"public_key": ""}, "public_key"),
        ({"public_key": ["ssh-ed25519 AAAA"]}, "public_key"),
        ({"public_key": "ssh-ed25519 AAAA\x00"}, "public_key"),
        ({"public_key": "x" * 16385}, "public_key"),
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"private": "maybe"}, "private"),
        ({"comment": "x"}, "comment"),
    ],
)
def test_bad_input(owner, body, field):
    response = add(owner, **body)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not SshKey.objects.exists()


def test_an_unknown_key_type_is_a_400_not_a_500(owner):
    response = add(
        owner, public_key="ssh-foo AAAAB3NzaC1mb28AAAAgeHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg="
    )

    assert response.status_code == 400
    assert "public_key" in response.json()["error"]["fields"]


def test_a_private_key_is_visible_only_to_its_owner(owner, make_actor):
    colleague = make_actor(Role.MEMBER, tenant=owner.tenant)
    mine = add(colleague, name="mine", private=True).json()
    shared = add(colleague, name="shared").json()
    assert mine["private"] is True

    def names(actor):
        return sorted(k["name"] for k in actor.token_client().get(actor.url("/ssh-keys")).json()["results"])

    assert names(colleague) == ["mine", "shared"]
    assert names(owner) == ["shared"]  # not even an owner sees a member's private key
    client = owner.token_client()
    assert client.get(owner.url(f"/ssh-keys/{mine['id']}")).status_code == 404
    assert client.delete(owner.url(f"/ssh-keys/{mine['id']}")).status_code == 404
    assert client.get(owner.url(f"/ssh-keys/{shared['id']}")).status_code == 200
    assert colleague.token_client().get(colleague.url(f"/ssh-keys/{mine['id']}")).status_code == 200


def test_delete(owner):
    key = add(owner).json()

    response = owner.token_client().delete(owner.url(f"/ssh-keys/{key['id']}"))

    assert response.status_code == 204
    assert not SshKey.objects.exists()
    audit = AuditEvent.objects.get(action="ssh_key.delete")
    assert audit.target_id == key["id"]
    assert audit.metadata["fingerprint"] == key["fingerprint"]
    assert owner.token_client().get(owner.url(f"/ssh-keys/{key['id']}")).status_code == 404


def test_another_tenants_key_is_not_found(owner, make_actor):
    other = make_actor(Role.OWNER)
    key = add(other).json()
    client = owner.token_client()

    assert client.get(owner.url(f"/ssh-keys/{key['id']}")).status_code == 404
    assert client.delete(owner.url(f"/ssh-keys/{key['id']}")).status_code == 404
    assert SshKey.objects.filter(pk=key["id"]).exists()


def test_add_honours_idempotency_key(owner):
    public_key = ed25519_public_key()
    headers = {"Idempotency-Key": "key-1"}
    client = owner.token_client()

    first = client.post(
        owner.url("/ssh-keys"), {"name": "a", "public_key": public_key}, format="json", headers=headers
    )
    second = client.post(
        owner.url("/ssh-keys"), {"name": "a", "public_key": public_key}, format="json", headers=headers
    )
    other = client.post(
        owner.url("/ssh-keys"), {"name": "b", "public_key": public_key}, format="json", headers=headers
    )

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert other.status_code == 422
    assert SshKey.objects.count() == 1


def test_a_viewer_lists_but_cannot_add(owner, make_actor):
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    assert viewer.token_client().get(viewer.url("/ssh-keys")).status_code == 200
    response = add(viewer)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_forbidden"
