"""Every refusal maps to its documented exit code, with the API's message and field errors on stderr and
never a traceback. No cluster is connected here: admitted launches stay pending."""

from __future__ import annotations

import os
import pty
import subprocess
import uuid
from collections.abc import Callable

import pytest

from apps.catalog.models import RegionCapacity
from apps.instances.models import Instance
from apps.quotas.services import quota_for
from apps.tenants.roles import Role
from tests.cli.conftest import GPUCLOUD, Cli, Result
from tests.conftest import Actor
from tests.factories import TenantFactory
from tests.instances.helpers import Catalog, instance_row
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)

LAUNCH = ("launch", "--region", "us-east-1", "--type", "gpu-h100x1", "--image", "pytorch")


def refused(result: Result, code: int, message: str) -> None:
    assert result.returncode == code, str(result)
    assert result.stderr.startswith(f"error: {message}"), str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert result.stdout == "", str(result)


def test_a_bad_token_exits_3_and_saves_nothing(cli: Cli, catalog: Catalog) -> None:
    result = cli("login", "--api-url", cli.api_url, "--token", "gpc_notarealtoken")
    refused(result, 3, "")
    assert not cli.config_file.exists()
    refused(cli("ls", GPUCLOUD_API_URL=cli.api_url, GPUCLOUD_TOKEN="gpc_notarealtoken"), 3, "")


def test_not_logged_in_exits_3(cli: Cli) -> None:
    refused(cli("ls"), 3, "not logged in (profile default): run `gpucloud login`")


def test_a_token_without_the_scope_exits_3(
    cli: Cli, make_actor: Callable[..., Actor], catalog: Catalog
) -> None:
    reader = make_actor(Role.OWNER, token_scopes=("instances:read",))
    cli.login(reader)
    refused(cli(*LAUNCH), 3, "")


def test_an_unknown_instance_exits_4(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    refused(cli("show", str(uuid.uuid4())), 4, "Not found.")
    refused(cli("stop", "no-such-instance"), 4, "No instance named or with id 'no-such-instance'.")
    refused(cli("ssh", "no-such-instance"), 4, "No instance named")


def test_a_launch_over_quota_exits_5(cli: Cli, funded: Actor) -> None:
    quota = quota_for(funded.tenant)
    quota.max_gpus = 0
    quota.save()
    cli.login(funded)
    refused(cli(*LAUNCH), 5, "Quota exceeded for GPUs: limit 0, in use 0, this request needs 1.")
    assert not Instance.objects.filter(tenant=funded.tenant).exists()


def test_a_launch_without_capacity_exits_6(cli: Cli, funded: Actor) -> None:
    # eu-west-1 has 4 H100s free; eight are asked for (within the tenant's quota of 8).
    RegionCapacity.objects.filter(region__slug="eu-west-1", gpu_type__slug="h100-80gb").update(gpus=4)
    cli.login(funded)
    result = cli("launch", "--region", "eu-west-1", "--type", "gpu-h100x8", "--image", "pytorch")
    refused(result, 6, "No capacity for gpu-h100x8 in eu-west-1 right now")
    assert not Instance.objects.filter(tenant=funded.tenant).exists()


def test_a_launch_without_funds_exits_7(cli: Cli, make_actor: Callable[..., Actor], catalog: Catalog) -> None:
    broke = make_actor(Role.OWNER, tenant=TenantFactory(credit=0))  # prepaid, no credit and no card
    cli.login(broke)
    refused(cli(*LAUNCH), 7, "The prepaid balance is used up")


def test_an_action_in_the_wrong_state_exits_8(cli: Cli, funded: Actor, catalog: Catalog) -> None:
    instance_row(
        tenant=funded.tenant,
        instance_type=catalog.instance_type("gpu-h100x1"),
        region=catalog.us_east,
        created_by=funded.user,
        name="busy",
        state="running",
    )
    cli.login(funded)
    refused(cli("start", "busy"), 8, "Cannot start an instance that is running.")
    refused(cli("ssh", "busy"), 8, "instance busy is running and not ready for ssh")


def test_ssh_before_the_instance_is_ready_exits_8(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    cli.ok(*LAUNCH, "--name", "early")
    refused(
        cli("ssh", "early"), 8, "instance early is pending and not ready for ssh; try `gpucloud wait` first"
    )


def test_waiting_longer_than_the_timeout_exits_9(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    result = cli(*LAUNCH, "--name", "stuck", "--wait", "--timeout", "1s")
    refused_wait = result.stderr.splitlines()
    assert result.returncode == 9, str(result)
    assert refused_wait[0].startswith("Launched stuck ("), str(result)
    assert refused_wait[1] == "error: timed out after 1s waiting for stuck to be running; it is pending"
    refused(
        cli("wait", "stuck", "--state", "stopped", "--timeout", "1"),
        9,
        "timed out after 1s waiting for stuck to be stopped; it is pending",
    )
    assert Instance.objects.get(name="stuck").state == "pending"


def test_a_bad_launch_prints_each_field_error(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    result = cli(
        "launch", "--region", "us-east-1", "--type", "gpu-h100x1", "--image", "pytorch",
        "--name", "cli-bad", "--auto-stop", "10s", "--max-runtime", "30",
    )  # fmt: skip
    assert result.returncode == 1, str(result)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: "), str(result)
    assert "  auto_stop_after: Ensure this value is greater than or equal to 60." in lines, str(result)
    assert "  max_runtime: Ensure this value is greater than or equal to 60." in lines, str(result)
    assert "Traceback" not in result.stderr
    unknown = cli("launch", "--region", "us-east-1", "--type", "gpu-z999", "--image", "pytorch")
    assert unknown.returncode == 1, str(unknown)
    assert "  instance_type: Unknown instance type 'gpu-z999'." in unknown.stderr.splitlines(), str(unknown)
    bad_name = cli(*LAUNCH, "--name", "Not A DNS Name!")
    assert bad_name.returncode == 1, str(bad_name)
    assert any(line.startswith("  name: ") for line in bad_name.stderr.splitlines()), str(bad_name)
    assert "Traceback" not in unknown.stderr + bad_name.stderr
    assert not Instance.objects.filter(tenant=funded.tenant).exists()


def test_an_unreachable_server_and_bad_usage(cli: Cli, funded: Actor) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("ls", GPUCLOUD_API_URL=dead, GPUCLOUD_TOKEN=funded.token_plaintext, GPUCLOUD_TENANT="t")
    refused(result, 1, f"cannot reach {dead}: ")
    usage = cli("launch", "--region", "us-east-1")
    assert usage.returncode == 2, str(usage)
    assert "the following arguments are required: --type, --image" in usage.stderr
    assert cli("--help").returncode == 0
    assert "9  timed out waiting" in cli("--help").stdout


def test_the_wait_spinner_draws_on_a_terminal_only(cli: Cli, funded: Actor) -> None:
    cli.login(funded)
    cli.ok(*LAUNCH, "--name", "slow")
    piped = cli("wait", "slow", "--timeout", "2")
    assert piped.stderr == "error: timed out after 2s waiting for slow to be running; it is pending\n"

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
    process = subprocess.Popen(
        [str(GPUCLOUD), "wait", "slow", "--timeout", "5"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**env, "HOME": str(cli.home)},
    )
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        drawn += chunk
    assert process.wait(timeout=120) == 9
    os.close(primary)
    text = drawn.decode()
    assert "slow: pending (waiting for running)" in text
    assert text.rstrip().endswith("error: timed out after 5s waiting for slow to be running; it is pending")
