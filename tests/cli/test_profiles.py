"""Profiles and the precedence of flags, environment and profile, through the real command."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from apps.tenants.roles import Role
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def tenant_of(cli: Cli, *args: str, **env: str) -> str:
    return str(cli.ok("whoami", "--json", *args, **env).json()["token"]["tenant"])


def test_profiles_and_what_overrides_them(
    cli: Cli, make_actor: Callable[..., Actor], catalog: Catalog
) -> None:
    home, work = make_actor(Role.OWNER), make_actor(Role.OWNER)
    cli.login(home)
    cli.login(work, profile="work")

    listed = cli.ok("profiles", "--json").json()
    assert [(p["name"], p["active"], p["tenant"]) for p in listed] == [
        ("default", True, home.tenant.slug),
        ("work", False, work.tenant.slug),
    ]
    assert "work" in cli.ok("profiles").stdout
    assert tenant_of(cli) == home.tenant.slug  # the first login made the default profile
    assert tenant_of(cli, "--profile", "work") == work.tenant.slug
    assert tenant_of(cli, GPUCLOUD_PROFILE="work") == work.tenant.slug
    assert tenant_of(cli, "--profile", "default", GPUCLOUD_PROFILE="work") == home.tenant.slug
    # A token from the environment wins over the profile's, and brings its own tenant.
    assert tenant_of(cli, GPUCLOUD_TOKEN=work.token_plaintext) == work.tenant.slug

    config = json.loads(cli.config_file.read_text())
    dead = f"http://127.0.0.1:{free_port()}"
    config["profiles"]["default"]["api_url"] = dead
    cli.config_file.write_text(json.dumps(config))
    unreachable = cli("whoami")
    assert unreachable.returncode == 1 and unreachable.stderr.startswith(f"error: cannot reach {dead}")
    assert tenant_of(cli, GPUCLOUD_API_URL=cli.api_url) == home.tenant.slug
    assert tenant_of(cli, "--api-url", cli.api_url, GPUCLOUD_API_URL=dead) == home.tenant.slug

    cli.ok("profiles", "use", "work")
    assert tenant_of(cli) == work.tenant.slug
    assert json.loads(cli.config_file.read_text())["default_profile"] == "work"


def test_a_config_file_others_can_read_is_refused(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    cli.config_file.chmod(0o644)
    before = cli.config_file.read_text()

    result = cli("whoami")
    assert result.returncode == 3, str(result)
    assert result.stderr.splitlines()[0] == (
        f"warning: ignoring {cli.config_file}: it is readable by group or others and holds API tokens; "
        f"run `chmod 600 {cli.config_file}`"
    )
    again = cli("login", "--api-url", cli.api_url, "--token", funded.token_plaintext)
    assert again.returncode == 1, str(again)
    assert "is readable by group or others" in again.stderr
    assert cli.config_file.read_text() == before

    cli.config_file.chmod(0o600)
    assert tenant_of(cli) == funded.tenant.slug


def test_login_reads_the_token_from_stdin(cli: Cli, funded: Actor) -> None:
    result = cli("login", "--api-url", cli.api_url, stdin=funded.token_plaintext + "\n")
    assert result.returncode == 0, str(result)
    assert tenant_of(cli) == funded.tenant.slug


def test_login_without_a_token_saves_nothing(cli: Cli, funded: Actor) -> None:
    result = cli("login", "--api-url", cli.api_url)
    assert result.returncode == 1, str(result)
    assert result.stderr == "error: no token: pass --token, or type it when asked\n"
    assert not cli.config_file.exists()


def test_logout_and_profiles_use_and_rm_print_json_for_scripts(
    cli: Cli, make_actor: Callable[..., Actor], catalog: Catalog
) -> None:
    cli.login(make_actor(Role.OWNER))
    for name in ("work", "lab"):
        cli.login(make_actor(Role.OWNER), profile=name)

    assert cli.ok("profiles", "use", "work", "--json").json() == {"default_profile": "work"}
    assert cli.ok("profiles", "rm", "work", "--json").json() == {
        "removed": "work",
        "default_profile": "default",
    }
    assert cli.ok("logout", "--profile", "lab", "--json").json() == {
        "removed": "lab",
        "default_profile": "default",
    }
    assert cli.ok("--json", "logout").json() == {"removed": "default", "default_profile": "default"}
    assert json.loads(cli.config_file.read_text())["profiles"] == {}
    # Without --json, people get a note on stderr and stdout stays empty.
    cli.login(make_actor(Role.OWNER), profile="solo")
    plain = cli.ok("logout", "--profile", "solo")
    assert (plain.stdout, plain.stderr) == ("", "Removed profile solo.\n")
