"""`gpucloud`: the command-line client. The parser is here; commands.py does the work."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from gpucloud_cli import commands, output
from gpucloud_cli.client import ApiError, GpucloudError, InstanceEnded, TransportError, WaitTimeout
from gpucloud_cli.config import ConfigError

OK, ERROR, USAGE, AUTH, NOT_FOUND, QUOTA, NO_CAPACITY, FUNDS, CONFLICT, TIMEOUT = range(10)

EPILOG = """\
exit codes:
  0  success
  1  error (invalid input, server error, cannot reach the server)
  2  usage error (bad command line)
  3  authentication or permission refused (HTTP 401/403), or not logged in
  4  not found (HTTP 404), including an unknown instance name
  5  refused by quota (409 quota_exceeded)
  6  no capacity for that type in that region now (409 no_capacity)
  7  insufficient funds (HTTP 402)
  8  conflict or invalid state (other 409), e.g. starting a running instance, ssh before it is ready
  9  timed out waiting (--wait, gpucloud wait)

environment:
  GPUCLOUD_API_URL, GPUCLOUD_TOKEN, GPUCLOUD_TENANT  override the profile's settings
  GPUCLOUD_PROFILE       the profile to use when --profile is not given
  GPUCLOUD_MAX_RETRIES   retries on connection errors, 429 and 5xx (default 4)
  GPUCLOUD_TIMEOUT       seconds per HTTP request (default 30)

configuration: ~/.config/gpucloud/config.json (0600), written by `gpucloud login`.
"""


def exit_code(error: BaseException) -> int:
    if isinstance(error, WaitTimeout):
        return TIMEOUT
    if isinstance(error, commands.NotLoggedIn):
        return AUTH
    if isinstance(error, commands.NotReady):
        return CONFLICT
    if isinstance(error, commands.BadCommandLine):
        return USAGE
    if not isinstance(error, ApiError):
        return ERROR
    if error.status in (401, 403):
        return AUTH
    if error.status == 404:
        return NOT_FOUND
    if error.status == 402:
        return FUNDS
    if error.status == 409:
        return {"quota_exceeded": QUOTA, "no_capacity": NO_CAPACITY}.get(error.code, CONFLICT)
    return ERROR


def report(error: BaseException) -> None:
    print(f"error: {getattr(error, 'message', None) or error}", file=sys.stderr)
    if isinstance(error, ApiError):
        for name, messages in error.fields.items():
            for message in messages:
                print(f"  {name}: {message}", file=sys.stderr)


# --- the parser -----------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (`gpucloud --json ls` and `gpucloud ls --json`)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--profile", help="configuration profile (default: GPUCLOUD_PROFILE, else default)")
    common.add_argument("--api-url", help="API base URL, e.g. https://gpucloud.example.com")
    common.add_argument("--tenant", help="tenant slug (default: the token's tenant)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def duration(text: str) -> int:
    try:
        return output.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _tag_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help=f"a tag{what}; repeatable (e.g. --tag team=ml)"
    )


def group_by(text: str) -> str:
    """--group-by: one of the report's groups, or tag:KEY (the server checks the key)."""
    if text in ("day", "instance", "instance_type") or (text.startswith("tag:") and len(text) > 4):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use day, instance, instance_type or tag:KEY")


def _wait_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait until {what}")
    parser.add_argument(
        "--timeout", type=duration, default=None, help="give up waiting after this long (default 15m)"
    )


class Builder:
    def __init__(self, parser: argparse.ArgumentParser):
        self.common = _common()
        self.subparsers = parser.add_subparsers(dest="command_name", metavar="COMMAND")

    def add(
        self, name: str, handler: Callable[[commands.Context], int], help_text: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        sub = self.subparsers.add_parser(name, help=help_text, description=help_text, parents=[self.common],
                                         **kwargs)  # fmt: skip
        sub.set_defaults(handler=handler)
        return sub

    def group(self, parent: argparse.ArgumentParser, dest: str) -> Callable[..., argparse.ArgumentParser]:
        """Actions such as `ssh-keys add`; without one, a group lists (`ssh-keys` is `ssh-keys ls`)."""
        actions = parent.add_subparsers(dest=dest, metavar="ACTION")

        def add(name: str, help_text: str) -> argparse.ArgumentParser:
            return actions.add_parser(name, help=help_text, description=help_text, parents=[self.common])

        return add


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucloud",
        description="Command-line client of the gpucloud API: GPU instances and clusters, keys, storage and "
        "billing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],
    )
    b = Builder(parser)

    p = b.add("login", commands.login, "store an API URL and token in a profile (checked with the API)")
    p.add_argument("--token", help="the API token (gpc_...); '-' or omitted: read from the terminal or stdin")
    b.add("logout", commands.logout, "forget a profile's token")
    p = b.add("profiles", commands.profiles, "list profiles; `profiles use NAME` sets the default")
    sub = b.group(p, "profiles_action")
    sub("ls", "list profiles")
    sub("use", "make a profile the default").add_argument("name")
    sub("rm", "remove a profile").add_argument("name")
    b.add("whoami", commands.whoami, "show the user, tenant and token in use")

    b.add("regions", commands.regions, "list regions")
    b.add("gpu-types", commands.gpu_types, "list GPU types")
    p = b.add("instance-types", commands.instance_types, "list instance types with their availability")
    p.add_argument("--gpu", help="GPU type, e.g. h100 or h100-80gb")
    p.add_argument("--region", help="only this region's availability")
    p.add_argument("--available", action="store_true", help="only types that can launch now")
    p.add_argument("--min-gpus", type=int, help="at least this many GPUs")
    b.add("images", commands.images, "list curated images")

    p = b.add("launch", commands.launch, "launch an instance")
    p.add_argument("--name", help="DNS-safe name (generated when omitted)")
    p.add_argument("--region", required=True)
    p.add_argument("--type", required=True, help="instance type, e.g. gpu-h100x1 (see instance-types)")
    p.add_argument("--image", required=True, help="image slug (see images) or reference")
    p.add_argument("--ssh-key", action="append", metavar="NAME_OR_ID", help="repeatable")
    p.add_argument("--volume", action="append", metavar="ID:/PATH", help="mount a volume; repeatable")
    p.add_argument("--zone", help="an availability zone of the region (see regions); default: any")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--command", help='command to run instead of the image\'s, e.g. "python train.py"')
    p.add_argument(
        "--auto-stop", type=duration, metavar="DURATION", help="stop after this long running, e.g. 2h"
    )
    p.add_argument(
        "--max-runtime", type=duration, metavar="DURATION", help="stop after this much running in total"
    )
    _tag_option(p)
    p.add_argument("--idempotency-key", help="reuse to make retries of this launch safe (default: random)")
    _wait_options(p, "it is running (a spinner shows progress on a terminal)")

    p = b.add("ls", commands.ls, "list instances")
    p.add_argument("--state", action="append", help="repeatable")
    p.add_argument("--region")
    p.add_argument("--type")
    p.add_argument("--name", help="name contains")
    p.add_argument("--all", action="store_true", help="include terminated instances")
    b.add("show", commands.show, "show an instance").add_argument("instance", metavar="NAME_OR_ID")
    for action, target in commands.ACTION_TARGET.items():
        p = b.add(action, commands.act, f"{action} an instance")
        p.add_argument("instance", metavar="NAME_OR_ID")
        _wait_options(p, f"it is {target}")
        if action == "terminate":
            p.add_argument("--delete-volumes", action="store_true", help="delete its attached volumes too")
    p = b.add("logs", commands.logs, "print an instance's log (its container's stdout and stderr)")
    p.add_argument("instance", metavar="NAME_OR_ID")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument("--tail", type=int, metavar="N", help="the last N lines, 1..10000 (default 200)")
    p.add_argument(
        "--since", type=duration, metavar="DURATION", help="only the last 30s, 10m, 2h ... (<= 7d)"
    )
    p.add_argument("--previous", action="store_true", help="the previous container's log (after a crash)")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its time (RFC 3339)")
    p.add_argument("--interval", type=float, default=None, help="seconds between polls with -f (default 2)")
    p = b.add("ssh", commands.ssh, "ssh into a running instance (runs its ssh command)")
    p.add_argument("instance", metavar="NAME_OR_ID")
    p.add_argument("ssh_args", nargs=argparse.REMAINDER, help="passed to ssh, after --")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the command instead")
    p = b.add("wait", commands.wait, "wait until an instance is in a state")
    p.add_argument("instance", metavar="NAME_OR_ID")
    p.add_argument("--state", action="append", help="repeatable; default running")
    p.add_argument("--timeout", type=duration, default=None, help="e.g. 90s, 10m (default 15m)")
    p.add_argument("--interval", type=float, default=None, help=argparse.SUPPRESS)

    p = b.add("cluster", commands.cluster, "create, list, show, ssh into, stop, start or terminate clusters")
    sub = b.group(p, "cluster_action")
    a = sub("create", "create a cluster: N whole nodes admitted, placed and started together")
    a.add_argument("--nodes", type=int, required=True, help="how many whole nodes")
    a.add_argument("--type", required=True, help="a whole-node instance type, e.g. gpu-h100x8")
    a.add_argument("--region", required=True)
    a.add_argument("--image", required=True, help="image slug (see images) or reference")
    a.add_argument(
        "--name", help="DNS-safe, at most 40 characters; nodes are NAME-RANK (generated when omitted)"
    )
    a.add_argument("--placement", choices=["block", "any"], help="block: one topology block (default); any")
    a.add_argument("--zone", help="an availability zone of the region (default: any; a block is in one)")
    a.add_argument(
        "--on-node-failure", choices=["replace", "stop", "fail"], help="when a node is lost (default replace)"
    )
    a.add_argument("--ssh-key", action="append", metavar="NAME_OR_ID", help="repeatable")
    a.add_argument("--env", action="append", metavar="KEY=VALUE", help="repeatable; set on every node")
    a.add_argument(
        "--volume",
        action="append",
        metavar="ID:/PATH",
        help="a ReadWriteMany volume on every node; repeatable",
    )
    a.add_argument("--command", help='command to run on every node, e.g. "torchrun train.py"')
    a.add_argument("--auto-stop", type=duration, metavar="DURATION", help="stop after this long running")
    a.add_argument("--max-runtime", type=duration, metavar="DURATION", help="stop after this much running")
    _tag_option(a, " of the cluster and of every node")
    a.add_argument("--idempotency-key", help="reuse to make retries of this create safe (default: random)")
    _wait_options(a, "every node is running (polls the cluster every 2 s)")
    a.add_argument("--interval", type=float, default=None, help=argparse.SUPPRESS)
    a = sub("ls", "list clusters")
    a.add_argument("--state", action="append", help="repeatable")
    a.add_argument("--region")
    a.add_argument("--all", action="store_true", help="include terminated clusters")
    sub("show", "show a cluster and its nodes").add_argument("cluster", metavar="NAME_OR_ID")
    a = sub("ssh", "ssh into one node of a running cluster (runs its ssh command)")
    a.add_argument("cluster", metavar="NAME_OR_ID")
    a.add_argument("--rank", type=int, default=0, help="the node's rank (default 0)")
    # What follows NAME goes to ssh, as for `ssh`; commands._cluster_ssh reads --rank and --print back from
    # its front (`cluster ssh NAME --rank 1 -- -v hostname`).
    a.add_argument("ssh_args", nargs=argparse.REMAINDER, help="passed to ssh, after --")
    a.add_argument("--print", dest="print_only", action="store_true", help="print the command instead")
    for action, target in commands.CLUSTER_ACTION_TARGET.items():
        a = sub(action, f"{action} every node of a cluster")
        a.add_argument("cluster", metavar="NAME_OR_ID")
        _wait_options(a, f"it is {target}")
        a.add_argument("--interval", type=float, default=None, help=argparse.SUPPRESS)

    p = b.add("ssh-keys", commands.ssh_keys, "list, add or remove SSH keys")
    sub = b.group(p, "keys_action")
    sub("ls", "list SSH keys")
    a = sub("add", "add a public key")
    a.add_argument("name")
    a.add_argument("--public-key-file", help="default ~/.ssh/id_ed25519.pub (or ecdsa, rsa)")
    a.add_argument("--public-key", help="the key line itself")
    a.add_argument("--private", action="store_true", help="only you can use it")
    sub("rm", "remove a key").add_argument("key", metavar="NAME_OR_ID")

    p = b.add("tokens", commands.tokens, "list, create or revoke API tokens")
    sub = b.group(p, "tokens_action")
    sub("ls", "list tokens")
    a = sub("create", "create a token (its secret is shown once)")
    a.add_argument("name")
    a.add_argument("--scope", action="append", required=True, help="repeatable, e.g. instances:write")
    a.add_argument("--expires-at", help="ISO 8601 date-time")
    sub("revoke", "revoke a token").add_argument("token_ref", metavar="NAME_OR_ID")

    b.add("quota", commands.quota, "show quota limits and use")
    p = b.add("usage", commands.usage, "show metered usage, or export its ledger lines (--csv, --lines, -o)")
    p.add_argument("--from", dest="start", help="ISO 8601 date or time (default: start of the month)")
    p.add_argument("--to", dest="end", help="ISO 8601 date or time, exclusive")
    p.add_argument(
        "--group-by",
        type=group_by,
        metavar="GROUP",
        help="day, instance, instance_type or tag:KEY (e.g. tag:team)",
    )
    p.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="only usage carrying this tag; repeatable (all must hold)",
    )
    p.add_argument("--csv", action="store_true", help="export the ledger lines as CSV")
    p.add_argument("--lines", action="store_true", help="export the ledger lines (--json: as JSON)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the ledger lines to FILE instead of stdout")
    b.add("balance", commands.balance, "show the wallet balance and burn rate")

    p = b.add("volumes", commands.volumes, "list, create, resize or delete volumes")
    sub = b.group(p, "volumes_action")
    sub("ls", "list volumes").add_argument("--region")
    a = sub("create", "create a volume")
    a.add_argument("name")
    a.add_argument("--region", required=True)
    a.add_argument("--size", type=int, required=True, help="GiB")
    a.add_argument("--zone", help="its availability zone (default: that of the first instance using it)")
    _tag_option(a)
    a = sub("resize", "grow a volume")
    a.add_argument("volume", metavar="NAME_OR_ID")
    a.add_argument("--size", type=int, required=True, help="GiB")
    sub("rm", "delete a volume").add_argument("volume", metavar="NAME_OR_ID")

    p = b.add("buckets", commands.buckets, "list, create or delete object storage buckets")
    sub = b.group(p, "buckets_action")
    sub("ls", "list buckets")
    a = sub("create", "create a bucket")
    a.add_argument("name")
    _tag_option(a)
    a = sub("rm", "delete a bucket")
    a.add_argument("name")
    a.add_argument("--force", action="store_true", help="delete its objects too")

    p = b.add("tag", commands.tag, "show or change the tags of an instance, cluster, volume or bucket")
    p.add_argument("kind", choices=list(commands.TAG_KINDS))
    p.add_argument("ref", metavar="NAME_OR_ID")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="set this tag; repeatable")
    p.add_argument("--untag", action="append", metavar="KEY", help="remove this tag; repeatable")

    p = b.add("tag-budgets", commands.tag_budgets, "list, create, change or delete tag budgets (alerts only)")
    sub = b.group(p, "tag_budgets_action")
    sub("ls", "list tag budgets with this month's spend")
    a = sub("create", "create a monthly budget for a tag")
    a.add_argument("tag", metavar="KEY=VALUE")
    a.add_argument("--amount", required=True, help="monthly amount in USD, e.g. 500.00")
    a = sub("update", "change a tag budget's monthly amount")
    a.add_argument("budget", metavar="KEY=VALUE_OR_ID")
    a.add_argument("--amount", required=True, help="monthly amount in USD")
    sub("rm", "delete a tag budget").add_argument("budget", metavar="KEY=VALUE_OR_ID")

    p = b.add("access-keys", commands.access_keys, "list, create or revoke S3 access keys")
    sub = b.group(p, "access_keys_action")
    sub("ls", "list access keys")
    sub("create", "create an access key (its secret is shown once)").add_argument("name")
    sub("revoke", "revoke an access key").add_argument("key", metavar="ID_OR_NAME")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return USAGE
    try:
        return handler(commands.Context(args))
    except (GpucloudError, ConfigError, InstanceEnded, TransportError) as error:
        report(error)
        return exit_code(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return ERROR
    except Exception as error:  # a bug of ours: still one line, the traceback only on request
        if os.environ.get("GPUCLOUD_DEBUG"):
            traceback.print_exc()
        name = type(error).__name__
        print(f"error: unexpected {name}: {error} (GPUCLOUD_DEBUG=1 shows more)", file=sys.stderr)
        return ERROR


if __name__ == "__main__":
    sys.exit(main())
