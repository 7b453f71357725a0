"""The chart bounds PostgreSQL connections (docs/operations.md "Database connections"): each component's
pool is set from what it runs, the most a release can open is computed here from a render exactly as the
docs' formula says, the docs' table of the defaults is that render's, and the chart renders a release
whose peak is exactly its budget and refuses one connection less."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.operator.operator_loop import OperatorConfig, pool_needed
from tests.helm.support import (
    CHART,
    PRODUCTION_VALUES,
    REPO_ROOT,
    component,
    env_of,
    helm,
    kube_version,
    pick,
    pod_templates,
    render,
)

pytestmark = pytest.mark.sandbox  # helm (and kubectl) come from the sandbox build

DOCS = REPO_ROOT / "docs" / "operations.md"
VALUES_FILES: dict[str, list[Path]] = {"default": [], "production": [PRODUCTION_VALUES]}


def _values(files: list[Path], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        _merge(values, yaml.safe_load(path.read_text()))
    _merge(values, overrides or {})
    return values


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _flag(command: list[str], name: str) -> int:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return int(value)


def _pool(pod: dict[str, Any]) -> int:
    return int(env_of(pod["containers"][0])["DATABASE_POOL_MAX_SIZE"]["value"])


def _waiters(pod: dict[str, Any]) -> int:
    return int(env_of(pod["containers"][0])["INSTANCE_WAIT_MAX_WAITERS"]["value"])


def _regions(pod: dict[str, Any], values: dict[str, Any]) -> int:
    command = pod["containers"][0]["command"]
    return len([a for a in command if a.startswith("--region=")]) or int(values["database"]["regions"])


def _operator_config(pod: dict[str, Any]) -> OperatorConfig:
    """The operator's configuration as the rendered command starts it (the command's defaults otherwise)."""
    command = pod["containers"][0]["command"]
    given = {
        field: _flag(command, flag)
        for field, flag in (
            ("pod_workers", "pod-workers"),
            ("change_workers", "change-workers"),
            ("resync_workers", "resync-workers"),
        )
        if any(arg.startswith(f"--{flag}=") for arg in command)
    }
    return OperatorConfig(**given)


def peak(docs: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """component -> (pods, connections per pod, connections), from the rendered objects as the docs say:
    pods = the most replicas (the autoscaler's maximum) plus the rolling update's surge."""
    deployments = {component(d): d for d in pick(docs, "Deployment")}
    autoscalers = {component(h): h for h in pick(docs, "HorizontalPodAutoscaler")}
    pods = pod_templates(docs)

    def most_pods(name: str) -> int:
        deployment = deployments[name]
        most = int(
            autoscalers[name]["spec"]["maxReplicas"]
            if name in autoscalers
            else deployment["spec"]["replicas"]
        )
        strategy = deployment["spec"]["strategy"]
        surge: Any = (strategy.get("rollingUpdate") or {}).get("maxSurge", 0)
        if isinstance(surge, str):
            surge = math.ceil(most * int(surge.rstrip("%")) / 100)
        return most + int(surge)

    web_command = pods["web"]["containers"][0]["command"]
    regions = _regions(pods["operator"], values)
    per_pod = {
        # Each gunicorn worker: its pool (its threads) and a LISTEN connection per long-poll waiter.
        "web": _flag(web_command, "workers") * (_flag(web_command, "threads") + _waiters(pods["web"])),
        "worker": _flag(pods["worker"]["containers"][0]["command"], "concurrency") * _pool(pods["worker"]),
        "beat": _pool(pods["beat"]),
        # Its pool, and per region a lock connection and the change listener's LISTEN connection.
        "operator": _pool(pods["operator"]) + 2 * regions,
        "migrations": _pool(pods["migrations"]),
    }
    counts = {name: most_pods(name) for name in ("web", "worker", "beat", "operator")} | {"migrations": 1}
    return {name: (counts[name], per_pod[name], counts[name] * per_pod[name]) for name in per_pod}


def _total(docs: list[dict[str, Any]], values: dict[str, Any]) -> int:
    return sum(connections for _, _, connections in peak(docs, values).values())


@pytest.mark.parametrize("values_file", sorted(VALUES_FILES))
def test_each_component_pools_what_it_runs(values_file: str) -> None:
    files = VALUES_FILES[values_file]
    values = _values(files)
    pods = pod_templates(render(*[a for f in files for a in ("-f", str(f))]))
    web_command = pods["web"]["containers"][0]["command"]
    assert _pool(pods["web"]) == _flag(web_command, "threads") == values["web"]["gunicorn"]["threads"]
    assert _pool(pods["worker"]) == 1  # a prefork process runs one task at a time
    assert _pool(pods["beat"]) == 1
    # What its threads may hold at once leading every region (apps/operator/operator_loop.pool_needed).
    operator = pods["operator"]
    assert _pool(operator) == pool_needed(_operator_config(operator), _regions(operator, values))
    assert _waiters(pods["web"]) == values["web"]["longPollWaiters"]
    assert _pool(pods["migrations"]) == 1
    for name, pod in pods.items():
        timeout = env_of(pod["containers"][0])["DATABASE_POOL_TIMEOUT"]["value"]
        assert timeout == str(values["database"]["poolTimeoutSeconds"]), name


def test_the_docs_table_is_the_default_render() -> None:
    values = _values([])
    figures = peak(render(), values)
    section = DOCS.read_text().split("\n## Database connections\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| Component | Connections at peak | Default chart |", 1)[1]
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", table, re.M)
    }
    pods = {name: figures[name][0] for name in figures}
    web_workers, web_threads = values["web"]["gunicorn"]["workers"], values["web"]["gunicorn"]["threads"]
    web_max = values["web"]["autoscaling"]["maxReplicas"]
    worker_max = values["worker"]["autoscaling"]["maxReplicas"]
    assert pods["web"] == web_max + math.ceil(web_max / 4)
    waiters = values["web"]["longPollWaiters"]
    assert rows["web"] == (
        f"({web_max} + {pods['web'] - web_max}) x {web_workers} x ({web_threads} + {waiters}) = "
        f"{figures['web'][2]}"
    )
    assert rows["worker"] == (
        f"({worker_max} + {pods['worker'] - worker_max}) x {values['worker']['concurrency']} = "
        f"{figures['worker'][2]}"
    )
    assert rows["beat"] == f"{pods['beat']} x 1 = {figures['beat'][2]}"
    op, regions = values["operator"], values["database"]["regions"]
    workers = f"{op['podWorkers']} + {op['changeWorkers']} + {op['resyncWorkers']} + 2"
    assert rows["operator"] == (
        f"{pods['operator']} x (1 + {regions} x ({workers}) + 2 x {regions}) = {figures['operator'][2]}"
    )
    assert rows["migrations"] == "1"
    db = values["database"]
    budget = db["maxConnections"] - db["reservedConnections"]
    total = _total(render(), values)
    assert rows["total"] == f"{total} <= {db['maxConnections']} - {db['reservedConnections']} = {budget}"
    production = _total(render("-f", str(PRODUCTION_VALUES)), _values([PRODUCTION_VALUES]))
    assert f"needs {production} and declares a server with `max_connections` " in " ".join(section.split())


BUDGET_CASES = {
    "default": [],
    "production": ["-f", str(PRODUCTION_VALUES)],
    "named regions": ["--set", "operator.regions={us-east-1,eu-west-1,ap-south-1}"],
    "no autoscaling": ["--set", "web.autoscaling.enabled=false", "--set", "web.replicas=3"],
    "bigger pools": ["--set", "worker.concurrency=8", "--set", "operator.resyncWorkers=10"],
    "more waiters": ["--set", "web.longPollWaiters=3"],
}


@pytest.mark.parametrize("case", sorted(BUDGET_CASES))
def test_the_chart_refuses_exactly_the_releases_above_the_budget(case: str) -> None:
    args = BUDGET_CASES[case]
    files = [Path(args[1])] if args[:1] == ["-f"] else []
    generous = ["--set", "database.maxConnections=10000"]
    total = _total(render(*args, *generous), _values(files))
    reserved = _values(files)["database"]["reservedConnections"]

    exact = ["--set", f"database.maxConnections={total + reserved}"]
    assert pick(render(*args, *exact), "Deployment")

    short = ["--set", f"database.maxConnections={total + reserved - 1}"]
    result = helm("template", "gc", str(CHART), "--kube-version", kube_version(), *args, *short)
    assert result.returncode != 0
    assert "PostgreSQL connections at peak: beat " in result.stderr
    assert f"= {total}, above database.maxConnections ({total + reserved - 1})" in result.stderr


@pytest.mark.parametrize(
    "where",
    [
        "config.DATABASE_POOL_MAX_SIZE",
        "web.env.DATABASE_POOL_MAX_SIZE",
        "worker.env.DATABASE_POOL",
        "web.env.INSTANCE_WAIT_MAX_WAITERS",  # web.longPollWaiters, which the budget counts
    ],
)
def test_the_pool_settings_are_the_charts_own(where: str) -> None:
    result = helm(
        "template", "gc", str(CHART), "--kube-version", kube_version(), "--set-string", f"{where}=64"
    )
    assert result.returncode != 0
    assert "/" + where.replace(".", "/") in result.stderr
