"""SSH key pages: list (shared keys and one's own private ones), add with the parser's errors on the field,
delete with a confirmation step; viewers read only, strangers get 404, a suspended tenant only deletes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client

from apps.accounts import services as account_services
from apps.accounts.models import SshKey
from apps.audit.models import AuditEvent
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.helpers import client_for, ed25519_public_key, page
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_actor: Callable[..., Any]) -> Any:
    return make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))


def _key(actor: Any, name: str = "laptop", private: bool = False) -> SshKey:
    return account_services.ssh_key_create(
        actor=actor.user, tenant=actor.tenant, name=name, public_key=ed25519_public_key(), private=private
    )


def test_the_list_shows_shared_keys_and_only_my_private_ones(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    shared = _key(owner, "team-key")
    _key(owner, "owners-own", private=True)
    mine = _key(member, "members-own", private=True)

    response = client_for(member.user).get(page("ssh_keys", owner.tenant))

    assert response.status_code == 200
    assert [k.name for k in response.context["keys"]] == ["members-own", "team-key"]
    html = response.content.decode()
    assert shared.fingerprint in html and mine.fingerprint in html
    assert "owners-own" not in html
    assert "Only you" in html and "The tenant" in html


def test_adding_a_key(owner: Any) -> None:
    client = client_for(owner.user)
    public_key = ed25519_public_key("ada@laptop")

    response = client.post(page("ssh_keys", owner.tenant), {"name": "laptop", "public_key": public_key})

    assert response.status_code == 302
    assert response.url == page("ssh_keys", owner.tenant)
    key = SshKey.objects.get(tenant=owner.tenant)
    assert (key.name, key.key_type, key.user) == ("laptop", "ed25519", None)
    assert AuditEvent.objects.get(action="ssh_key.create", tenant=owner.tenant).via == "console"
    listing = client.get(response.url).content.decode()
    assert key.fingerprint in listing and "Added the key laptop" in listing


def test_a_private_key_is_kept_to_its_owner(owner: Any) -> None:
    client_for(owner.user).post(
        page("ssh_keys", owner.tenant), {"name": "mine", "public_key": ed25519_public_key(), "private": "on"}
    )
    assert SshKey.objects.get(tenant=owner.tenant).user == owner.user


def _weak_rsa() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a weak key to refuse
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (
            {"name": "x", "public_key": "ssh-ed25519 not-base64!"},
            "public_key",
            "Not a valid OpenSSH public key.",
        ),
        (
            {"name": "x", "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"},
            "public_key",
            "This looks like a private key.",
        ),
        ({"name": "x", "public_key": "hello"}, "public_key", "Not an OpenSSH public key"),
        ({"name": "x", "public_key": "RSA1024"}, "public_key", "at least 2048 bits"),
        ({"name": "", "public_key": "ED25519"}, "name", "This field may not be blank."),
        ({"name": "n" * 101, "public_key": "ED25519"}, "name", "no more than 100 characters"),
        ({"name": "x", "public_key": ""}, "public_key", "This field may not be blank."),
    ],
)
def test_a_bad_key_is_refused_on_its_field(
    owner: Any, form: dict[str, str], field: str, message: str
) -> None:
    form = dict(form)
    form["public_key"] = {"RSA1024": _weak_rsa(), "ED25519": ed25519_public_key()}.get(
        form["public_key"], form["public_key"]
    )

    response = client_for(owner.user).post(page("ssh_keys", owner.tenant), form)

    assert response.status_code == 400
    assert any(message in m for m in response.context["field_errors"][field])
    html = response.content.decode()
    assert 'aria-invalid="true"' in html
    assert message.replace("'", "&#x27;") in html
    assert not SshKey.objects.exists()


def test_the_same_key_twice_is_refused(owner: Any) -> None:
    key = _key(owner)
    response = client_for(owner.user).post(
        page("ssh_keys", owner.tenant), {"name": "again", "public_key": key.public_key}
    )
    assert response.status_code == 400
    assert f"Already added ({key.fingerprint})." in response.content.decode()


def test_deleting_a_key_asks_first(owner: Any) -> None:
    key = _key(owner)
    client = client_for(owner.user)
    url = page("ssh_key_delete", owner.tenant, key.pk)
    assert url in client.get(page("ssh_keys", owner.tenant)).content.decode()

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Yes, delete laptop" in confirm.content.decode()
    assert SshKey.objects.filter(pk=key.pk).exists()

    response = client.post(url)
    assert response.status_code == 302
    assert not SshKey.objects.filter(pk=key.pk).exists()
    assert AuditEvent.objects.filter(action="ssh_key.delete", tenant=owner.tenant).exists()


def test_a_viewer_reads_but_cannot_add_or_delete(make_actor: Callable[..., Any], owner: Any) -> None:
    key = _key(owner)
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    html = client.get(page("ssh_keys", owner.tenant)).content.decode()
    assert "laptop" in html
    assert "Add a key" not in html and page("ssh_key_delete", owner.tenant, key.pk) not in html

    added = client.post(page("ssh_keys", owner.tenant), {"name": "x", "public_key": ed25519_public_key()})
    assert added.status_code == 403
    assert client.get(page("ssh_key_delete", owner.tenant, key.pk)).status_code == 403
    assert client.post(page("ssh_key_delete", owner.tenant, key.pk)).status_code == 403
    assert list(SshKey.objects.all()) == [key]


def test_other_tenants_and_other_members_private_keys_are_404(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    key = _key(owner, "acme-key")
    private = _key(owner, "owners-own", private=True)
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    stranger = make_actor(Role.OWNER)
    member_client = client_for(member.user)

    for client, url in [
        (client_for(stranger.user), page("ssh_keys", owner.tenant)),
        (client_for(stranger.user), page("ssh_key_delete", stranger.tenant, key.pk)),
        (client_for(stranger.user), page("ssh_key_delete", owner.tenant, key.pk)),
        (member_client, page("ssh_key_delete", owner.tenant, private.pk)),
    ]:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 404, url
            html = response.content.decode()
            assert "owners-own" not in html and "acme-key" not in html
            if client is not member_client:
                assert "Acme Research" not in html
    assert SshKey.objects.count() == 2


def test_a_suspended_tenant_deletes_but_does_not_add(make_actor: Callable[..., Any]) -> None:
    owner = make_actor(
        Role.OWNER, tenant=TenantFactory(status=TenantStatus.SUSPENDED, status_reason="Unpaid")
    )
    key = _key(owner)
    client = client_for(owner.user)

    refused = client.post(page("ssh_keys", owner.tenant), {"name": "x", "public_key": ed25519_public_key()})
    assert refused.status_code == 403
    assert "suspended" in refused.content.decode()
    assert client.post(page("ssh_key_delete", owner.tenant, key.pk)).status_code == 302
    assert not SshKey.objects.exists()


def test_adding_a_key_needs_csrf(owner: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner.user)
    response = strict.post(page("ssh_keys", owner.tenant), {"name": "x", "public_key": ed25519_public_key()})
    assert response.status_code == 403
    assert not SshKey.objects.exists()
