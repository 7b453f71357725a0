"""The `gpucloud` command run for real: the installed console script (.venv/bin/gpucloud) as a subprocess,
with HOME pointed at a temporary directory, against a gunicorn server (tests/support/processes.py) serving
this test process's PostgreSQL database.

The server is started once for the package; every test is transactional (the server sees its rows) and
seeds the catalog itself. Tests that need instances to really run connect us-east-1 to the Kubernetes sandbox
and start the operator in-process (`live_region`), as the browser tests do; the others leave regions without
a cluster, so launches are admitted and stay pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from apps.operator import names
from apps.operator.operator_loop import Operator, OperatorConfig
from apps.tenants.models import Tenant
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox, delete_namespace
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import connect
from tests.support.processes import PYTHON, Processes, free_port, wait_for

GPUCLOUD = Path(sys.executable).parent / "gpucloud"
RUN_TIMEOUT = 300.0  # seconds per command: a bound for a hung server, not a performance assertion
OPERATOR = OperatorConfig(
    resync_seconds=2.0, lock_retry_seconds=0.5, watch_timeout_seconds=3, gc_known_tenants_only=True
)


@pytest.fixture(scope="package")
def server(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One gunicorn for the package, on the test database (created by django_db_setup)."""
    if not GPUCLOUD.is_file():
        pytest.fail(f"{GPUCLOUD} is missing: run `.venv/bin/pip install -e . --no-deps`", pytrace=False)
    processes = Processes(tmp_path_factory.mktemp("cli-server"))
    port = free_port()
    processes.start(
        "web",
        [
            PYTHON, "-m", "gunicorn", "config.wsgi:application", f"--bind=127.0.0.1:{port}",
            "--workers=1", "--worker-class=gthread", "--threads=4", "--timeout=120",
        ],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, what=f"the web server at {url}", processes=processes)
    yield url
    processes.stop_all()


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        command = f"gpucloud {' '.join(self.args)} -> {self.returncode}"
        return f"{command}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@dataclass
class Cli:
    """Runs the installed `gpucloud` with its own HOME; `env` adds variables to every run."""

    home: Path
    api_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "gpucloud" / "config.json"

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCLOUD_", "XDG_CONFIG"))}
        full_env = {**base, "HOME": str(self.home), "GPUCLOUD_MAX_RETRIES": "1", **self.env, **env}
        done = subprocess.run(
            [str(GPUCLOUD), *args],
            input=stdin or "",  # never the test runner's own stdin
            capture_output=True,
            text=True,
            env=full_env,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        return Result(args, done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **env: str) -> Result:
        result = self(*args, **env)
        assert result.returncode == 0, str(result)
        assert "Traceback" not in result.stderr, str(result)
        return result

    def login(self, actor: Actor, profile: str | None = None) -> Result:
        extra = ["--profile", profile] if profile else []
        return self.ok("login", "--api-url", self.api_url, "--token", actor.token_plaintext, *extra)


@pytest.fixture
def cli(server: str, tmp_path: Path, transactional_db: Any) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home=home, api_url=server)


@pytest.fixture
def funded(make_actor: Callable[..., Actor], catalog: Catalog) -> Actor:
    """An owner whose tenant has credit (the factory's default) and the seeded catalog."""
    return make_actor(Role.OWNER)


@pytest.fixture
def live_region(
    catalog: Catalog, sandbox: Sandbox, kube_clients: dict[str, client.ApiClient]
) -> Iterator[Catalog]:
    """us-east-1 connected to its sandbox cluster with the operator running in-process; every tenant
    namespace the test made there is deleted afterwards."""
    connect(catalog.us_east, sandbox)
    operator = Operator(OPERATOR, regions=["us-east-1"]).start()
    try:
        wait_for(lambda: "us-east-1" in operator.leading(), what="the operator to lead us-east-1", timeout=60)
        yield catalog
    finally:
        operator.shutdown()
        for tenant in Tenant.objects.all():
            delete_namespace(kube_clients["us-east-1"], names.namespace_name(tenant.pk, tenant.slug))
