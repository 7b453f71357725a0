"""`gpucloud cluster ...` against the live server: create (and --wait), ls, show, ssh into a node, the
actions, and the exit codes of the refusals. The region has no Kubernetes cluster here, so the nodes' pods
are stood for by the operator's observations (services.instance_observe), committed as the test goes."""

from __future__ import annotations

import shlex
import threading
import time
from typing import Any

import pytest
from django.db import connection

from apps.instances import services
from apps.instances.models import Cluster, Instance
from apps.instances.states import Observation
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.instances.cluster_helpers import room_for_clusters
from tests.instances.helpers import Catalog, ed25519_public_key

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = ("cluster", "create", "--nodes", "2", "--type", "gpu-h100x8", "--region", "us-east-1")
SSH = "ssh -p 30022 gpucloud@203.0.113.7"


def observe(cluster: Cluster | str, *observations: Observation, **fields: Any) -> None:
    nodes = Instance.objects.filter(cluster_id=cluster.pk if isinstance(cluster, Cluster) else cluster)
    for node in nodes.order_by("rank"):
        for observation in observations:
            services.instance_observe(instance_id=node.pk, observation=observation, **fields)


@pytest.fixture
def roomy(funded: Actor, catalog: Catalog) -> Actor:
    room_for_clusters(funded.tenant, catalog.us_east)
    return funded


def test_create_ls_show_ssh_stop_start_terminate(cli: Cli, roomy: Actor, tmp_path: Any) -> None:
    cli.login(roomy)
    cli.ok("ssh-keys", "add", "laptop", "--public-key", ed25519_public_key("cli@test"))

    created = cli.ok(*CREATE, "--image", "pytorch", "--name", "llm", "--ssh-key", "laptop", "--env", "A=1")
    assert "Created cluster llm" in created.stderr and "block spine-1" in created.stderr
    cluster = Cluster.objects.get(tenant=roomy.tenant, name="llm")
    assert created.stdout.splitlines()[0].split() == ["id:", str(cluster.pk)]
    nodes = list(Instance.objects.filter(cluster=cluster).order_by("rank"))
    assert [(n.rank, n.name, n.ssh_keys.count()) for n in nodes] == [(0, "llm-0", 1), (1, "llm-1", 1)]

    table = cli.ok("cluster", "ls").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "NODES", "TYPE", "REGION", "BLOCK", "PRICE/H"]
    assert table[1].split()[:7] == [
        str(cluster.pk),
        "llm",
        "pending",
        "0/2",
        "gpu-h100x8",
        "us-east-1",
        "spine-1",
    ]
    assert [c["name"] for c in cli.ok("cluster", "--json").json()] == ["llm"]  # `cluster` is `cluster ls`

    shown = cli.ok("cluster", "show", "llm").stdout
    assert "placement:" in shown and "llm-1" in shown and str(nodes[1].pk) in shown

    not_yet = cli("cluster", "ssh", "llm", "--rank", "1", "--print")
    assert not_yet.returncode == 8 and "not ready for ssh" in not_yet.stderr, str(not_yet)

    connection_info = {"host": "203.0.113.7", "port": 30022, "user": "gpucloud", "ssh_command": SSH}
    observe(cluster, Observation.POD_CREATED, Observation.POD_READY, connection=connection_info)
    running = cli.ok("cluster", "show", str(cluster.pk), "--json").json()
    assert running["state"] == "running" and {n["state"] for n in running["nodes"]} == {"running"}
    printed = cli.ok("cluster", "ssh", "llm", "--rank", "1", "--print", "--", "-v", "hostname").stdout
    assert shlex.split(printed) == [
        "ssh",
        "-o",
        "ConnectionAttempts=10",
        *shlex.split(SSH)[1:],
        "-v",
        "hostname",
    ]
    first = cli.ok("cluster", "ssh", "llm", "--print").stdout  # rank 0 by default
    assert shlex.split(first) == ["ssh", "-o", "ConnectionAttempts=10", *shlex.split(SSH)[1:]]
    missing = cli("cluster", "ssh", "llm", "--rank", "5", "--print")
    assert missing.returncode == 4 and "no node of rank 5" in missing.stderr, str(missing)

    refused = cli("cluster", "start", "llm")
    assert refused.returncode == 8 and "Cannot start a cluster that is running" in refused.stderr

    stopping = cli.ok("cluster", "stop", "llm", "--json").json()
    assert stopping["state"] == "stopping"
    observe(cluster, Observation.POD_GONE)
    assert cli.ok("cluster", "show", "llm", "--json").json()["state"] == "stopped"
    assert cli.ok("cluster", "start", "llm").stdout.strip() == "llm: starting"
    assert cli.ok("cluster", "terminate", "llm").stdout.strip() == "llm: terminating"
    observe(cluster, Observation.POD_GONE)
    assert cli.ok("cluster", "ls").stdout.strip() == "No clusters."
    everything = cli.ok("cluster", "ls", "--all", "--json").json()
    assert [(c["name"], c["state"]) for c in everything] == [("llm", "terminated")]


def test_create_wait_polls_until_every_node_runs(cli: Cli, roomy: Actor) -> None:
    cli.login(roomy)

    def run_the_nodes() -> None:
        """The operator's part: once the cluster exists, its pods start and become Ready."""
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                cluster = Cluster.objects.filter(tenant=roomy.tenant, name="waited").first()
                if cluster is not None:
                    time.sleep(1)  # the CLI's first look sees it pending
                    observe(cluster, Observation.POD_CREATED, Observation.POD_READY)
                    return
                time.sleep(0.2)
        finally:
            connection.close()

    operator = threading.Thread(target=run_the_nodes)
    operator.start()
    try:
        done = cli.ok(
            *CREATE, "--image", "pytorch", "--name", "waited", "--wait", "--timeout", "60", "--json"
        )
    finally:
        operator.join()
    cluster = done.json()
    assert cluster["state"] == "running"
    assert [(n["rank"], n["state"]) for n in cluster["nodes"]] == [(0, "running"), (1, "running")]


def test_refusals_exit_with_their_codes(cli: Cli, roomy: Actor) -> None:
    cli.login(roomy)
    timed_out = cli(*CREATE, "--image", "pytorch", "--name", "slow", "--wait", "--timeout", "2")
    assert timed_out.returncode == 9, str(timed_out)
    assert "waiting for cluster slow to be running; it is pending" in timed_out.stderr

    small = cli("cluster", "create", "--nodes", "1", "--type", "gpu-h100x1", "--region", "us-east-1",
                "--image", "pytorch")  # fmt: skip
    assert small.returncode == 1 and "  instance_type: " in small.stderr, str(small)
    none = cli("cluster", "create", "--nodes", "0", "--type", "gpu-h100x8", "--region", "us-east-1",
               "--image", "pytorch")  # fmt: skip
    assert none.returncode == 1 and "  node_count: " in none.stderr, str(none)
    too_big = cli(*CREATE[:3], "40", *CREATE[4:], "--image", "pytorch", "--name", "huge")
    assert too_big.returncode == 6, str(too_big)  # no block holds 40 whole nodes
    bad_choice = cli(*CREATE, "--image", "pytorch", "--placement", "rack")
    assert bad_choice.returncode == 2, str(bad_choice)  # argparse refuses it before any request
    unknown = cli("cluster", "show", "nope")
    assert unknown.returncode == 4 and "No cluster named" in unknown.stderr, str(unknown)
