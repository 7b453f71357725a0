"""What each `gpucloud` subcommand does; main.py builds the parser and maps errors to exit codes."""

from __future__ import annotations

import argparse
import codecs
import getpass
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpucloud_cli import output
from gpucloud_cli.client import ApiError, Client, GpucloudError
from gpucloud_cli.config import ConfigError, ConfigFile, Profile, Settings, config_dir, profile_name, resolve

DEFAULT_WAIT_SECONDS = 15 * 60
ACTION_TARGET = {"stop": "stopped", "start": "running", "restart": "running", "terminate": "terminated"}


class NotLoggedIn(GpucloudError):
    pass


class NotReady(GpucloudError):
    """The instance exists but cannot do what was asked yet (exit code 8, like an invalid state)."""


@dataclass
class Context:
    args: argparse.Namespace
    _config: ConfigFile | None = None
    _client: Client | None = None
    stdout: Any = field(default_factory=lambda: sys.stdout)

    def opt(self, name: str, default: Any = None) -> Any:
        return getattr(self.args, name, default)

    @property
    def json(self) -> bool:
        return bool(self.opt("json", False))

    @property
    def config(self) -> ConfigFile:
        if self._config is None:
            self._config = ConfigFile.load()
        return self._config

    def settings(self) -> Settings:
        return resolve(
            self.config, profile=self.opt("profile"), api_url=self.opt("api_url"), tenant=self.opt("tenant")
        )

    @property
    def client(self) -> Client:
        if self._client is None:
            settings = self.settings()
            if not settings.api_url or not settings.token:
                raise NotLoggedIn(
                    f"not logged in (profile {settings.profile}): run `gpucloud login`, or set "
                    "GPUCLOUD_API_URL and GPUCLOUD_TOKEN"
                )
            self._client = make_client(settings.api_url, settings.token, settings.tenant or None)
        return self._client

    def print(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def emit(self, data: Any, human: Callable[[], str]) -> int:
        self.print(output.to_json(data) if self.json else human())
        return 0


def make_client(api_url: str, token: str, tenant: str | None) -> Client:
    return Client(
        api_url,
        token,
        tenant=tenant,
        max_retries=int(os.environ.get("GPUCLOUD_MAX_RETRIES", "4")),
        timeout=float(os.environ.get("GPUCLOUD_TIMEOUT", "30")),
    )


def note(text: str) -> None:
    """Progress for people, on stderr so that stdout stays parseable."""
    print(text, file=sys.stderr)


def _rows_or(ctx: Context, rows: list[Any], columns: list[output.Column], empty: str) -> int:
    return ctx.emit(rows, lambda: output.table(rows, columns) if rows else empty)


# --- configuration --------------------------------------------------------------------------------------


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt).strip()
    return sys.stdin.readline().strip()


def login(ctx: Context) -> int:
    config = ctx.config
    if config.refused:
        raise ConfigError(f"{config.path} is readable by group or others; run `chmod 600 {config.path}`")
    name = profile_name(ctx.opt("profile"), config)
    stored = config.profiles.get(name, Profile(name=name))
    api_url = ctx.opt("api_url") or os.environ.get("GPUCLOUD_API_URL") or ""
    if not api_url and sys.stdin.isatty():
        answer = input(f"API URL [{stored.api_url}]: " if stored.api_url else "API URL: ").strip()
        api_url = answer or stored.api_url
    api_url = (api_url or stored.api_url).rstrip("/")
    if not api_url:
        raise ConfigError("no API URL: pass --api-url (e.g. https://gpucloud.example.com)")
    token = ctx.opt("token") or ""
    if token in ("", "-"):
        token = _read_secret("API token: ")
    if not token:
        raise ConfigError("no token: pass --token, or type it when asked")
    client = make_client(api_url, token, ctx.opt("tenant"))
    me = client.me()  # a bad token stops here with exit code 3, and nothing is saved
    tenant = client.tenant
    config.profiles[name] = Profile(name=name, api_url=api_url, token=token, tenant=tenant, email=me["email"])
    if config.default_profile not in config.profiles:
        config.default_profile = name
    config.save()
    if ctx.json:
        return ctx.emit({"profile": name, "api_url": api_url, "tenant": tenant, "email": me["email"]}, str)
    note(f"Logged in to {api_url} as {me['email']}, tenant {tenant} (profile {name}).")
    note(f"Saved to {config.path}")
    return 0


def logout(ctx: Context) -> int:
    config = ctx.config
    name = profile_name(ctx.opt("profile"), config)
    if config.profiles.pop(name, None) is None:
        raise ConfigError(f"no profile named {name}")
    if config.default_profile == name:
        config.default_profile = sorted(config.profiles)[0] if config.profiles else "default"
    config.save()
    if ctx.json:
        return ctx.emit({"removed": name, "default_profile": config.default_profile}, str)
    note(f"Removed profile {name}.")
    return 0


def profiles(ctx: Context) -> int:
    config = ctx.config
    action = ctx.opt("profiles_action") or "ls"
    if action in ("use", "rm"):
        name = ctx.args.name
        if name not in config.profiles:
            raise ConfigError(f"no profile named {name}; see `gpucloud profiles`")
        if action == "use":
            config.default_profile = name
        else:
            del config.profiles[name]
            if config.default_profile == name:
                config.default_profile = sorted(config.profiles)[0] if config.profiles else "default"
        config.save()
        if ctx.json:
            done = {"default_profile": config.default_profile}
            return ctx.emit(done if action == "use" else {"removed": name, **done}, str)
        note(f"Default profile: {config.default_profile}." if action == "use" else f"Removed profile {name}.")
        return 0
    active = profile_name(ctx.opt("profile"), config)
    rows = [
        {
            "name": p.name,
            "active": p.name == active,
            "api_url": p.api_url,
            "tenant": p.tenant,
            "email": p.email,
        }
        for p in sorted(config.profiles.values(), key=lambda p: p.name)
    ]
    columns: list[output.Column] = [
        ("", lambda r: "*" if r["active"] else " "),
        ("PROFILE", "name"),
        ("API URL", "api_url"),
        ("TENANT", "tenant"),
        ("EMAIL", "email"),
    ]
    return _rows_or(ctx, rows, columns, "No profiles: run `gpucloud login`.")


def whoami(ctx: Context) -> int:
    me = ctx.client.me()
    token: dict[str, Any] = dict(me.get("token") or {})
    settings = ctx.settings()
    pairs = [
        ("email", me["email"]),
        ("tenant", ctx.client.tenant),
        ("token", token.get("name")),
        ("scopes", token.get("scopes")),
        ("api url", ctx.client.api_url),
        ("profile", settings.profile),
    ]
    return ctx.emit(me, lambda: output.details(pairs))


# --- catalog --------------------------------------------------------------------------------------------


def regions(ctx: Context) -> int:
    columns: list[output.Column] = [
        ("REGION", "slug"),
        ("NAME", "name"),
        ("STATUS", "status"),
        ("ZONES", lambda r: ", ".join(r.get("zones") or []) or "-"),
        ("STORAGE", "storage_class"),
    ]
    return _rows_or(ctx, ctx.client.regions(), columns, "No regions.")


def gpu_types(ctx: Context) -> int:
    columns: list[output.Column] = [
        ("GPU", "slug"),
        ("MODEL", "model"),
        ("MEMORY", lambda g: f"{g['memory_gib']} GiB"),
        ("VENDOR", "vendor"),
        ("FRACTIONAL", "is_fractional"),
    ]
    return _rows_or(ctx, ctx.client.gpu_types(), columns, "No GPU types.")


def _gpu_slugs(ctx: Context, wanted: str) -> set[str]:
    """`--gpu h100` means the h100-80gb type and its relatives; an exact slug means just that type."""
    known = [g["slug"] for g in ctx.client.gpu_types()]
    wanted = wanted.lower()
    if wanted in known:
        return {wanted}
    found = {slug for slug in known if slug.startswith(f"{wanted}-") or slug.split("-")[0] == wanted}
    if not found:
        raise ApiError(400, "invalid", f"Unknown GPU type '{wanted}'; known: {', '.join(known)}.")
    return found


def instance_types(ctx: Context) -> int:
    region = ctx.opt("region")
    items = ctx.client.instance_types(
        region=region, available=True if ctx.opt("available") else None, min_gpus=ctx.opt("min_gpus")
    )
    if ctx.opt("gpu"):
        slugs = _gpu_slugs(ctx, ctx.opt("gpu"))
        items = [t for t in items if t["gpu_type"] in slugs]

    def availability(t: Any) -> str:
        offers = [r for r in t["regions"] if region in (None, r["region"])]
        if region:  # one region: per zone too, e.g. "us-east-1:3 (us-east-1a:3, us-east-1b:0)"
            return ", ".join(_with_zones(r) for r in offers) or "-"
        return ", ".join(f"{r['region']}:{r['available']}" for r in offers) or "-"

    columns: list[output.Column] = [
        ("TYPE", "slug"),
        ("GPUS", lambda t: f"{t['gpu_count']}x {t['gpu_type']}" if t["gpu_type"] else "-"),
        ("VCPU", "vcpu"),
        ("MEMORY", lambda t: f"{t['memory_gib']} GiB"),
        ("DISK", lambda t: f"{t['ephemeral_disk_gib']} GiB"),
        ("PRICE/H", "price_per_hour"),
        ("AVAILABLE", availability),
    ]
    return _rows_or(ctx, items, columns, "No instance types match.")


def _with_zones(offer: Any) -> str:
    zones = offer.get("zones") or {}
    listed = ", ".join(f"{zone}:{n}" for zone, n in zones.items())
    return f"{offer['region']}:{offer['available']}" + (f" ({listed})" if listed else "")


def images(ctx: Context) -> int:
    columns: list[output.Column] = [
        ("IMAGE", "slug"),
        ("NAME", "name"),
        ("REFERENCE", "reference"),
        ("REGIONS", "regions"),
    ]
    return _rows_or(ctx, ctx.client.images(), columns, "No images.")


# --- instances ------------------------------------------------------------------------------------------

INSTANCE_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("TYPE", "instance_type"),
    ("REGION", "region"),
    ("PRICE/H", "price_per_hour"),
    ("COST", "cost_so_far"),
    ("UPTIME", lambda i: output.duration(i["running_seconds"])),
]


def tags_text(tags: dict[str, str] | None) -> list[str]:
    """key=value, by key (the table and detail cells join them with commas)."""
    return [f"{key}={value}" for key, value in sorted((tags or {}).items())]


def instance_details(instance: Any) -> str:
    connection = instance.get("connection") or {}
    volumes = [f"{v['name']}:{v['mount_path']}" for v in instance.get("volumes") or []]
    pairs = [
        ("id", instance["id"]),
        ("name", instance["name"]),
        ("tags", tags_text(instance.get("tags"))),
        ("state", instance["state"]),
        ("desired state", instance["desired_state"]),
        ("region", instance["region"]),
        ("zone", instance.get("zone") or "any"),
        ("type", instance["instance_type"]),
        ("gpus", f"{instance['gpu_count']}x {instance['gpu_type']}" if instance["gpu_type"] else "-"),
        ("image", instance["image"]),
        ("ssh", connection.get("ssh_command")),
        ("volumes", volumes),
        ("price/h", instance["price_per_hour"]),
        ("cost so far", instance["cost_so_far"]),
        ("uptime", output.duration(instance["running_seconds"])),
        ("auto stop", output.duration(instance["auto_stop_after"])),
        ("allowed actions", instance["allowed_actions"]),
        ("created", instance["created_at"]),
    ]
    if instance.get("failure_reason") or instance.get("state_message"):
        pairs.insert(3, ("message", f"{instance['failure_reason']} {instance['state_message']}".strip()))
    return output.details(pairs)


def _wait(ctx: Context, instance: Any, state: str | list[str]) -> Any:
    states = [state] if isinstance(state, str) else state
    with output.Spinner() as spinner:

        def progress(current: Any) -> None:
            spinner.update(f"{current['name']}: {current['state']} (waiting for {' or '.join(states)})")

        return ctx.client.wait(
            instance["id"],
            states,
            timeout=ctx.opt("timeout") or DEFAULT_WAIT_SECONDS,
            interval=ctx.opt("interval") or 2.0,
            on_poll=progress,
        )


def _mounts(client: Any, specs: list[str] | None) -> list[dict[str, str]]:
    """`--volume ID_OR_NAME:/path` options as the API's mounts."""
    volumes = []
    for spec in specs or []:
        ref, sep, path = spec.partition(":")
        if not sep or not path:
            raise ApiError(400, "invalid", f"--volume {spec!r}: use ID_OR_NAME:/mount/path")
        volumes.append({"volume_id": client.find_volume(ref)["id"], "mount_path": path})
    return volumes


def launch(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client
    env = _env(args.env)
    volumes = _mounts(client, args.volume)
    instance = client.launch(
        name=args.name,
        region=args.region,
        instance_type=args.type,
        image=args.image,
        ssh_key_ids=[client.find_ssh_key(ref)["id"] for ref in args.ssh_key or []],
        env=env,
        command=shlex.split(args.command) if args.command else None,
        auto_stop_after=args.auto_stop,
        max_runtime=args.max_runtime,
        volumes=volumes,
        tags=_tags(args.tag),
        zone=args.zone,
        idempotency_key=args.idempotency_key,
    )
    if not ctx.json:
        note(f"Launched {instance['name']} ({instance['id']}) in {instance['region']}: {instance['state']}.")
    if args.wait:
        instance = _wait(ctx, instance, "running")
    return ctx.emit(instance, lambda: instance_details(instance))


def ls(ctx: Context) -> int:
    items = ctx.client.instances(
        state=ctx.opt("state"),
        region=ctx.opt("region"),
        instance_type=ctx.opt("type"),
        name=ctx.opt("name"),
        include_terminated=bool(ctx.opt("all")),
    )
    return _rows_or(ctx, items, INSTANCE_COLUMNS, "No instances.")


def show(ctx: Context) -> int:
    instance = ctx.client.find_instance(ctx.args.instance)
    return ctx.emit(instance, lambda: instance_details(instance))


def act(ctx: Context) -> int:
    action = ctx.args.command_name
    client = ctx.client
    instance = client.find_instance(ctx.args.instance)
    if action == "terminate":
        instance = client.terminate(instance["id"], delete_volumes=bool(ctx.opt("delete_volumes")))
    else:
        instance = getattr(client, action)(instance["id"])
    if ctx.opt("wait"):
        instance = _wait(ctx, instance, ACTION_TARGET[action])
    return ctx.emit(instance, lambda: f"{instance['name']}: {instance['state']}")


def wait(ctx: Context) -> int:
    instance = ctx.client.find_instance(ctx.args.instance)
    instance = _wait(ctx, instance, ctx.opt("state") or ["running"])
    return ctx.emit(instance, lambda: f"{instance['name']}: {instance['state']}")


def logs(ctx: Context) -> int:
    """Print the instance's log; -f keeps printing new lines until Ctrl-C or the instance is terminated.
    No log (no pod yet, terminated, not in this region) is said on stderr and is not an error, except a
    cluster that could not be asked (exit 1)."""
    client = ctx.client
    instance = client.find_instance(ctx.args.instance)
    options = {"tail": ctx.opt("tail"), "since": ctx.opt("since"), "previous": bool(ctx.opt("previous"))}
    if ctx.opt("follow"):
        interval = ctx.opt("interval") or 2.0
        for stamp, text in client.follow_logs(
            instance["id"], interval=interval, on_unavailable=lambda log: note(str(log["message"])), **options
        ):
            if ctx.json:
                ctx.print(output.to_json_line({"timestamp": stamp, "line": text}))
            else:
                ctx.print(f"{stamp} {text}" if ctx.opt("timestamps") else text)
            ctx.stdout.flush()
        return 0
    log = client.instance_logs(instance["id"], timestamps=bool(ctx.opt("timestamps")), **options)
    if log["reason"] == "error":
        raise GpucloudError(str(log["message"]))
    if ctx.json:
        return ctx.emit(log, str)
    if not log["available"]:
        note(f"{instance['name']}: {log['message']}")
    if log["truncated"]:
        note(f"(older lines left out: --tail {len(log['lines'])})")
    for line in log["lines"]:
        ctx.print(line)
    return 0


def _known_hosts_file(line: str) -> Path:
    """The CLI's known_hosts file with `line` in it, replacing an older line for the same host and port
    (another instance may have had that NodePort before)."""
    path = config_dir() / "known_hosts"
    host = line.split(" ", 1)[0]
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [existing for existing in lines if existing.split(" ", 1)[0] != host]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{entry}\n" for entry in [*kept, line]))
    return path


SSH_CONNECTION_ATTEMPTS = 10


def ssh(ctx: Context) -> int:
    return _ssh_into(ctx, ctx.client.find_instance(ctx.args.instance))


def _ssh_into(ctx: Context, instance: Any) -> int:
    """Exec (or with --print, print) the instance's ssh command, its host key checked strictly: for
    `ssh INSTANCE` and for `cluster ssh CLUSTER --rank R` (a node is an instance)."""
    command = (instance.get("connection") or {}).get("ssh_command")
    if instance["state"] != "running" or not command:
        raise NotReady(
            f"instance {instance['name']} is {instance['state']} and not ready for ssh"
            + ("" if instance["state"] in ("terminated", "failed") else "; try `gpucloud wait` first")
        )
    extra = list(ctx.args.ssh_args)
    argv = shlex.split(command)
    known = (instance.get("connection") or {}).get("known_hosts")
    own_checks = any("StrictHostKeyChecking" in arg or "UserKnownHostsFile" in arg for arg in extra)
    if known and not own_checks:
        # The API names the instance's host key: check it strictly, in a known_hosts file of the CLI's own
        # (the user's ~/.ssh/known_hosts is left alone; a host key that changed is refused, not trusted).
        checked = f"UserKnownHostsFile={_known_hosts_file(known)}"
        argv[1:1] = ["-o", checked, "-o", "StrictHostKeyChecking=yes"]
    if not any("ConnectionAttempts" in arg for arg in extra):
        # `running` means the SSH server in the container answers its probe; the node's port forwarding
        # (kube-proxy) may follow a moment later, and a client that waited with ?wait=running is there at
        # once: ssh itself retries a refused connection, once a second (docs/cli.md, `ssh`).
        argv[1:1] = ["-o", f"ConnectionAttempts={SSH_CONNECTION_ATTEMPTS}"]
    argv += extra[1:] if extra[:1] == ["--"] else extra
    if ctx.opt("print_only"):
        ctx.print(shlex.join(argv))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (the user's own ssh, with the API's host and port)
    except OSError as exc:
        raise GpucloudError(f"cannot run {argv[0]}: {exc}") from exc
    return 0  # not reached: execvp replaced this process


# --- clusters -------------------------------------------------------------------------------------------

CLUSTER_ACTION_TARGET = {"stop": "stopped", "start": "running", "terminate": "terminated"}
CLUSTER_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("NODES", lambda c: f"{sum(n['state'] == 'running' for n in c['nodes'])}/{c['node_count']}"),
    ("TYPE", "instance_type"),
    ("REGION", "region"),
    ("BLOCK", "block"),
    ("PRICE/H", "cluster_price_per_hour"),
]
NODE_COLUMNS: list[output.Column] = [
    ("RANK", "rank"),
    ("INSTANCE", "instance_id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("SSH", lambda n: (n.get("connection") or {}).get("ssh_command")),
]


def cluster_details(cluster: Any) -> str:
    pairs = [
        ("id", cluster["id"]),
        ("name", cluster["name"]),
        ("tags", tags_text(cluster.get("tags"))),
        ("state", cluster["state"]),
        ("desired state", cluster["desired_state"]),
        ("region", cluster["region"]),
        ("type", cluster["instance_type"]),
        ("nodes", cluster["node_count"]),
        ("placement", cluster["placement"]),
        ("block", cluster["block"]),
        ("zone", cluster.get("zone") or "any"),
        ("on node failure", cluster["on_node_failure"]),
        ("image", cluster["image"]),
        ("price/h per node", cluster["price_per_hour"]),
        ("price/h", cluster["cluster_price_per_hour"]),
        ("allowed actions", cluster["allowed_actions"]),
        ("created", cluster["created_at"]),
    ]
    if cluster.get("failure_reason") or cluster.get("state_message"):
        pairs.insert(3, ("message", f"{cluster['failure_reason']} {cluster['state_message']}".strip()))
    nodes = output.table(cluster["nodes"], NODE_COLUMNS) if cluster["nodes"] else "No nodes."
    return f"{output.details(pairs)}\n\n{nodes}"


def _wait_cluster(ctx: Context, cluster: Any, state: str) -> Any:
    with output.Spinner() as spinner:

        def progress(current: Any) -> None:
            running = sum(n["state"] == "running" for n in current["nodes"])
            spinner.update(
                f"{current['name']}: {current['state']}, {running}/{current['node_count']} nodes running "
                f"(waiting for {state})"
            )

        return ctx.client.wait_cluster(
            cluster["id"],
            state,
            timeout=ctx.opt("timeout") or DEFAULT_WAIT_SECONDS,
            interval=ctx.opt("interval") or 2.0,
            on_poll=progress,
        )


def _tags(pairs: list[str] | None, option: str = "--tag") -> dict[str, str]:
    """`--tag KEY=VALUE` options (the value may be empty); the server checks keys and values."""
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(400, "invalid", f"{option} {pair!r}: use KEY=VALUE", {"tags": ["Use KEY=VALUE."]})
        tags[key] = value
    return tags


def _env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(400, "invalid", f"--env {pair!r}: use KEY=VALUE", {"env": ["Use KEY=VALUE."]})
        env[key] = value
    return env


def cluster(ctx: Context) -> int:
    action = ctx.opt("cluster_action") or "ls"
    handler = {
        "create": _cluster_create,
        "ls": _cluster_ls,
        "show": _cluster_show,
        "ssh": _cluster_ssh,
        "stop": _cluster_act,
        "start": _cluster_act,
        "terminate": _cluster_act,
    }[action]
    return handler(ctx)


def _cluster_create(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client
    created = client.cluster_create(
        name=args.name,
        region=args.region,
        instance_type=args.type,
        image=args.image,
        node_count=args.nodes,
        placement=args.placement,
        on_node_failure=args.on_node_failure,
        ssh_key_ids=[client.find_ssh_key(ref)["id"] for ref in args.ssh_key or []],
        env=_env(args.env),
        command=shlex.split(args.command) if args.command else None,
        auto_stop_after=args.auto_stop,
        max_runtime=args.max_runtime,
        volumes=_mounts(client, args.volume),
        tags=_tags(args.tag),
        zone=args.zone,
        idempotency_key=args.idempotency_key,
    )
    if not ctx.json:
        where = f"block {created['block']}" if created["block"] else "any nodes"
        if created.get("zone"):
            where += f" in zone {created['zone']}"
        note(
            f"Created cluster {created['name']} ({created['id']}): {created['node_count']} x "
            f"{created['instance_type']} in {created['region']}, {where}: {created['state']}."
        )
    if args.wait:
        created = _wait_cluster(ctx, created, "running")
    return ctx.emit(created, lambda: cluster_details(created))


def _cluster_ls(ctx: Context) -> int:
    items = ctx.client.clusters(
        state=ctx.opt("state"), region=ctx.opt("region"), include_terminated=bool(ctx.opt("all"))
    )
    return _rows_or(ctx, items, CLUSTER_COLUMNS, "No clusters.")


def _cluster_show(ctx: Context) -> int:
    found = ctx.client.find_cluster(ctx.args.cluster)
    return ctx.emit(found, lambda: cluster_details(found))


def _own_ssh_options(ctx: Context) -> None:
    """`cluster ssh NAME --rank 1 --print -- ARGS`: argparse hands everything after NAME to ssh (REMAINDER,
    as for `ssh`), so the command's own options written after NAME are read back from the front of it, up to
    `--` or the first argument that is not one of them."""
    extra = list(ctx.args.ssh_args)
    while extra:
        head = extra[0]
        if head == "--print":
            ctx.args.print_only = True
            extra = extra[1:]
        elif head == "--rank" and len(extra) > 1:
            ctx.args.rank = _rank(extra[1])
            extra = extra[2:]
        elif head.startswith("--rank="):
            ctx.args.rank = _rank(head.partition("=")[2])
            extra = extra[1:]
        else:
            break
    ctx.args.ssh_args = extra


def _rank(text: str) -> int:
    if not text.isdigit():
        raise ApiError(400, "invalid", f"--rank {text!r}: a node's rank, 0 or more", {"rank": ["A number."]})
    return int(text)


def _cluster_ssh(ctx: Context) -> int:
    _own_ssh_options(ctx)
    found = ctx.client.find_cluster(ctx.args.cluster)
    rank = ctx.opt("rank") or 0
    node = next((n for n in found["nodes"] if n["rank"] == rank), None)
    if node is None:
        ranks = f"0 to {found['node_count'] - 1}"
        raise ApiError(
            404, "not_found", f"Cluster {found['name']} has no node of rank {rank} (ranks {ranks})."
        )
    return _ssh_into(ctx, ctx.client.instance(node["instance_id"]))


def _cluster_act(ctx: Context) -> int:
    action = ctx.args.cluster_action
    client = ctx.client
    found = client.find_cluster(ctx.args.cluster)
    acted = getattr(client, f"cluster_{action}")(found["id"])
    if ctx.opt("wait"):
        acted = _wait_cluster(ctx, acted, CLUSTER_ACTION_TARGET[action])
    return ctx.emit(acted, lambda: f"{acted['name']}: {acted['state']}")


# --- keys and tokens ------------------------------------------------------------------------------------

SSH_KEY_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("TYPE", "key_type"),
    ("FINGERPRINT", "fingerprint"),
    ("PRIVATE", "private"),
    ("CREATED BY", "created_by"),
]


def _public_key(ctx: Context) -> str:
    if ctx.opt("public_key"):
        return str(ctx.opt("public_key"))
    path = ctx.opt("public_key_file")
    candidates = [Path(path).expanduser()] if path else [
        Path.home() / ".ssh" / name for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
    ]  # fmt: skip
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text().strip()
    raise ConfigError(f"no public key file at {candidates[0]}: pass --public-key-file or --public-key")


def ssh_keys(ctx: Context) -> int:
    action = ctx.opt("keys_action") or "ls"
    client = ctx.client
    if action == "add":
        key = client.ssh_key_add(name=ctx.args.name, public_key=_public_key(ctx), private=ctx.opt("private"))
        return ctx.emit(key, lambda: output.table([key], SSH_KEY_COLUMNS))
    if action == "rm":
        key = client.find_ssh_key(ctx.args.key)
        client.ssh_key_delete(key["id"])
        return ctx.emit({"deleted": key["id"]}, lambda: f"Deleted SSH key {key['name']}.")
    return _rows_or(ctx, client.ssh_keys(), SSH_KEY_COLUMNS, "No SSH keys.")


def _secret_lost(what: str, revoke: str) -> str:
    """A create whose first answer was lost and whose retry was replayed (same Idempotency-Key): the API
    shows a secret only once, so the replay has none."""
    return (
        f"Created {what}, but its secret was in the first response, which was lost on the way; the secret "
        f"is shown only once and cannot be shown again. Revoke it (`{revoke}`) and create a new one."
    )


TOKEN_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("PREFIX", "prefix"),
    ("USER", "user"),
    ("SCOPES", "scopes"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
    ("ACTIVE", "active"),
]


def tokens(ctx: Context) -> int:
    action = ctx.opt("tokens_action") or "ls"
    client = ctx.client
    if action == "create":
        created = client.token_create(
            name=ctx.args.name, scopes=ctx.args.scope, expires_at=ctx.opt("expires_at")
        )
        if created["token"] is None:
            lost = _secret_lost(f"token {created['name']}", f"gpucloud tokens revoke {created['id']}")
            if ctx.json:
                note(lost)
            return ctx.emit(created, lambda: lost)
        message = f"Created token {created['name']}. Its secret, shown only now:\n{created['token']}"
        return ctx.emit(created, lambda: message)
    if action == "revoke":
        token = client.find_token(ctx.args.token_ref)
        client.token_revoke(token["id"])
        return ctx.emit({"revoked": token["id"]}, lambda: f"Revoked token {token['name']}.")
    return _rows_or(ctx, client.tokens(), TOKEN_COLUMNS, "No tokens.")


# --- quota and billing ----------------------------------------------------------------------------------


def quota(ctx: Context) -> int:
    data = ctx.client.quota()

    def human() -> str:
        text = output.table(data["limits"], [("RESOURCE", "resource"), ("USED", "used"), ("LIMIT", "limit")])
        if data["gpu_types"]:
            columns: list[output.Column] = [
                ("GPU TYPE", "gpu_type"),
                ("REGION", lambda g: g["region"] or "all"),
                ("USED", "used"),
                ("LIMIT", "limit"),
            ]
            text += "\n\n" + output.table(data["gpu_types"], columns)
        return text

    return ctx.emit(data, human)


class BadCommandLine(GpucloudError):
    """Options that argparse accepts one by one but not together (exit code 2, like argparse's own)."""


class _TextSink:
    """Bytes written to a text stream (stdout when it has no binary buffer, as under tests), decoded
    incrementally so a character split between two pieces arrives whole."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def write(self, data: bytes) -> int:
        self.stream.write(self.decoder.decode(data))
        return len(data)


def _usage_export(ctx: Context) -> int:
    """The ledger lines, CSV unless --json, to stdout or to -o FILE (written whole or not at all: a
    download cut off leaves no partial file behind)."""
    if ctx.opt("csv") and ctx.json:
        raise BadCommandLine("--csv and --json: choose one format for the ledger lines")
    if ctx.opt("group_by"):
        raise BadCommandLine("--group-by groups the usage report, not the ledger lines (--csv, --lines, -o)")
    fmt = "json" if ctx.json else "csv"
    output = ctx.opt("output")

    def export(out: Any) -> int:
        return ctx.client.usage_export(out, start=ctx.opt("start"), end=ctx.opt("end"), fmt=fmt)

    if not output or output == "-":
        stdout = ctx.stdout
        export(getattr(stdout, "buffer", None) or _TextSink(stdout))
        stdout.flush()
        return 0
    target = Path(output)
    partial = target.with_name(f".{target.name}.part")
    try:
        out = partial.open("wb")
    except OSError as exc:
        raise GpucloudError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with out:
            written = export(out)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    note(f"Wrote {written} bytes of {fmt.upper()} to {target}.")
    return 0


def usage(ctx: Context) -> int:
    if ctx.opt("csv") or ctx.opt("lines") or ctx.opt("output"):
        return _usage_export(ctx)
    data = ctx.client.usage(
        start=ctx.opt("start"), end=ctx.opt("end"), group_by=ctx.opt("group_by"), tags=_tags(ctx.opt("tag"))
    )

    def human() -> str:
        columns: list[output.Column] = [
            ("KEY", "key"),
            ("NAME", "name"),
            ("HOURS", "quantity_hours"),
            ("AMOUNT", "amount"),
        ]
        header = f"Usage from {data['from']} to {data['to']}, by {data['group_by']}"
        if data.get("tags"):
            header += f", tagged {' and '.join(tags_text(data['tags']))}"
        body = output.table(data["results"], columns) if data["results"] else "No usage."
        return f"{header}\n\n{body}\n\nTotal: {data['total']}"

    return ctx.emit(data, human)


def balance(ctx: Context) -> int:
    data = ctx.client.balance()
    currency = data.get("currency", "")
    pairs = [
        ("balance", f"{data['balance']} {currency}"),
        ("mode", data["mode"]),
        ("credits", data["credits"]),
        ("usage", data["usage"]),
        ("credit limit", data["credit_limit"]),
        ("month to date", data["month_to_date_spend"]),
        ("burn rate/h", data["burn_rate_per_hour"]),
        ("runway", output.duration(data["runway_seconds"])),
        ("as of", data["as_of"]),
    ]
    return ctx.emit(data, lambda: output.details(pairs))


# --- tags -----------------------------------------------------------------------------------------------

TAG_KINDS = ("instance", "cluster", "volume", "bucket")


def tag(ctx: Context) -> int:
    """Show a resource's tags; --tag KEY=VALUE sets one, --untag KEY removes one (others are kept). A
    cluster's nodes follow the cluster."""
    kind, ref, client = ctx.args.kind, ctx.args.ref, ctx.client
    changes: dict[str, str | None] = dict(_tags(ctx.opt("tag")))
    for key in ctx.opt("untag") or []:
        if key in changes:
            raise ApiError(
                400, "invalid", f"--tag and --untag both name {key!r}", {"tags": ["Set or remove."]}
            )
        changes[key] = None
    found: Any
    if kind == "instance":
        found = client.find_instance(ref)
        if changes:
            found = client.instance_tags(found["id"], changes)
    elif kind == "cluster":
        found = client.find_cluster(ref)
        if changes:
            found = client.cluster_tags(found["id"], changes)
    elif kind == "volume":
        found = client.find_volume(ref)
        if changes:
            found = client.volume_tags(found["id"], changes)
    else:
        found = client.bucket_tags(ref, changes) if changes else client.bucket(ref)
    lines = tags_text(found.get("tags"))
    return ctx.emit(found, lambda: "\n".join(lines) if lines else f"{kind} {found['name']} has no tags.")


TAG_BUDGET_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("TAG", lambda b: f"{b['key']}={b['value']}"),
    ("MONTHLY", "monthly_amount"),
    ("SPENT", "month_to_date_spend"),
    ("USED", lambda b: f"{b['percent_used']}%"),
    ("ALERTS", "alerts_sent"),
]


def _find_tag_budget(client: Client, ref: str) -> Any:
    """A budget by id, or by its tag KEY=VALUE (keys are read in lower case, as the server does)."""
    budgets = client.tag_budgets()
    key, sep, value = ref.partition("=")
    found = [b for b in budgets if b["id"] == ref] or (
        [b for b in budgets if (b["key"], b["value"]) == (key.lower(), value)] if sep else []
    )
    if not found:
        raise ApiError(404, "not_found", f"No tag budget with id or tag '{ref}'.")
    return found[0]


def tag_budgets(ctx: Context) -> int:
    action = ctx.opt("tag_budgets_action") or "ls"
    client = ctx.client
    if action == "create":
        key, sep, value = ctx.args.tag.partition("=")
        if not sep or not key:
            raise ApiError(400, "invalid", f"{ctx.args.tag!r}: use KEY=VALUE", {"key": ["Use KEY=VALUE."]})
        created = client.tag_budget_create(key=key, value=value, monthly_amount=ctx.args.amount)
        return ctx.emit(created, lambda: output.table([created], TAG_BUDGET_COLUMNS))
    if action == "update":
        budget = _find_tag_budget(client, ctx.args.budget)
        changed = client.tag_budget_update(budget["id"], monthly_amount=ctx.args.amount)
        return ctx.emit(changed, lambda: output.table([changed], TAG_BUDGET_COLUMNS))
    if action == "rm":
        budget = _find_tag_budget(client, ctx.args.budget)
        client.tag_budget_delete(budget["id"])
        return ctx.emit(
            {"deleted": budget["id"]}, lambda: f"Deleted the budget of tag {budget['key']}={budget['value']}."
        )
    return _rows_or(ctx, client.tag_budgets(), TAG_BUDGET_COLUMNS, "No tag budgets.")


# --- storage --------------------------------------------------------------------------------------------

VOLUME_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("REGION", "region"),
    ("ZONE", lambda v: v.get("zone") or "-"),
    ("SIZE", lambda v: f"{v['size_gib']} GiB"),
    ("STATE", "state"),
    ("ATTACHED TO", lambda v: [a.get("instance_name") or a.get("instance_id") for a in v["attachments"]]),
    ("PRICE/H", "price_per_hour"),
    ("TAGS", lambda v: tags_text(v.get("tags"))),
]


def volumes(ctx: Context) -> int:
    action = ctx.opt("volumes_action") or "ls"
    client = ctx.client
    if action == "create":
        volume = client.volume_create(
            name=ctx.args.name,
            region=ctx.args.region,
            size_gib=ctx.args.size,
            tags=_tags(ctx.opt("tag")),
            zone=ctx.opt("zone"),
        )
        return ctx.emit(volume, lambda: output.table([volume], VOLUME_COLUMNS))
    if action == "resize":
        volume = client.volume_resize(client.find_volume(ctx.args.volume)["id"], size_gib=ctx.args.size)
        return ctx.emit(volume, lambda: output.table([volume], VOLUME_COLUMNS))
    if action == "rm":
        volume = client.volume_delete(client.find_volume(ctx.args.volume)["id"])
        return ctx.emit(volume, lambda: f"Deleting volume {volume['name']}: {volume['state']}.")
    items = client.volumes(region=ctx.opt("region"))
    return _rows_or(ctx, items, VOLUME_COLUMNS, "No volumes.")


BUCKET_COLUMNS: list[output.Column] = [
    ("NAME", "name"),
    ("S3 NAME", "physical_name"),
    ("OBJECTS", "object_count"),
    ("BYTES", "size_bytes"),
    ("CREATED BY", "created_by"),
    ("TAGS", lambda b: tags_text(b.get("tags"))),
]


def buckets(ctx: Context) -> int:
    action = ctx.opt("buckets_action") or "ls"
    client = ctx.client
    if action == "create":
        bucket = client.bucket_create(name=ctx.args.name, tags=_tags(ctx.opt("tag")))
        return ctx.emit(bucket, lambda: output.table([bucket], BUCKET_COLUMNS))
    if action == "rm":
        client.bucket_delete(ctx.args.name, force=bool(ctx.opt("force")))
        return ctx.emit({"deleted": ctx.args.name}, lambda: f"Deleted bucket {ctx.args.name}.")
    return _rows_or(ctx, client.buckets(), BUCKET_COLUMNS, "No buckets.")


ACCESS_KEY_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ACCESS KEY ID", "access_key_id"),
    ("ACTIVE", "active"),
    ("CREATED BY", "created_by"),
]


def access_keys(ctx: Context) -> int:
    action = ctx.opt("access_keys_action") or "ls"
    client = ctx.client
    if action == "create":
        created = client.access_key_create(name=ctx.args.name)
        if created["secret_access_key"] is None:
            revoke = f"gpucloud access-keys revoke {created['id']}"
            lost = _secret_lost(f"access key {created['access_key_id']}", revoke)
            if ctx.json:
                note(lost)
            return ctx.emit(created, lambda: lost)
        pairs = [
            ("access key id", created["access_key_id"]),
            ("secret (shown once)", created["secret_access_key"]),
            ("endpoint", created["endpoint_url"]),
            ("region", created["region"]),
        ]
        return ctx.emit(created, lambda: output.details(pairs))
    if action == "revoke":
        key = client.find_access_key(ctx.args.key)
        client.access_key_revoke(key["id"])
        return ctx.emit({"revoked": key["id"]}, lambda: f"Revoked access key {key['access_key_id']}.")
    return _rows_or(ctx, client.access_keys(), ACCESS_KEY_COLUMNS, "No access keys.")
