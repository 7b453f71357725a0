"""`manage.py create_api_token`: prints a working token, refuses bad input, audits with via=command."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts import token_secrets
from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import database_text


def _run(*args: str) -> str:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip()


def test_prints_a_working_token(owner: Actor) -> None:
    plaintext = _run(
        "--email",
        owner.user.email.upper(),
        "--tenant",
        owner.tenant.slug,
        "--scopes",
        "tenant:read,instances:write",
    )

    assert token_secrets.TOKEN_RE.match(plaintext)
    token = ApiToken.objects.get(prefix=token_secrets.parse_prefix(plaintext))
    assert (token.user, token.tenant, token.name) == (owner.user, owner.tenant, "cli")
    assert token.scopes == ["instances:write", "tenant:read"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get(owner.url("/members")).status_code == 200
    assert plaintext not in database_text()


def test_name_and_expiry(owner: Actor) -> None:
    plaintext = _run(
        "--email", owner.user.email, "--tenant", owner.tenant.slug, "--scopes", "tenant:read",
        "--name", "deploy", "--expires-in-days", "7",
    )  # fmt: skip

    token = ApiToken.objects.get(prefix=token_secrets.parse_prefix(plaintext))
    assert token.name == "deploy"
    assert token.expires_at is not None


def test_is_audited_with_via_command(owner: Actor) -> None:
    plaintext = _run("--email", owner.user.email, "--tenant", owner.tenant.slug, "--scopes", "tenant:read")

    token = ApiToken.objects.get(prefix=token_secrets.parse_prefix(plaintext))
    event = AuditEvent.objects.get(action="token.create", target_id=str(token.pk))
    assert event.via == "command"
    assert event.actor_user == owner.user
    assert event.tenant == owner.tenant
    assert event.changes["scopes"] == ["tenant:read"]


@pytest.mark.parametrize(
    ("email", "tenant", "scopes", "message"),
    [
        ("nobody@example.com", None, "tenant:read", "No user"),
        (None, "no-such-tenant", "tenant:read", "not a member"),
        (None, None, "tenant:nope", "Unknown scope"),
        (None, None, "", "at least one scope"),
    ],
)
def test_bad_input_is_a_command_error(
    owner: Actor, email: str | None, tenant: str | None, scopes: str, message: str
) -> None:
    count = ApiToken.objects.count()

    with pytest.raises(CommandError, match=message):
        _run(
            "--email", email or owner.user.email, "--tenant", tenant or owner.tenant.slug, "--scopes", scopes
        )

    assert ApiToken.objects.count() == count
    assert not AuditEvent.objects.filter(action="token.create").exists()


def test_a_user_of_another_tenant_is_refused(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)

    with pytest.raises(CommandError, match="not a member"):
        _run("--email", stranger.user.email, "--tenant", owner.tenant.slug, "--scopes", "tenant:read")


def test_scopes_beyond_the_role_are_refused(make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER)

    with pytest.raises(CommandError, match="cannot grant"):
        _run("--email", viewer.user.email, "--tenant", viewer.tenant.slug, "--scopes", "instances:write")
