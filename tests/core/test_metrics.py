"""/metrics: who may scrape it, and that what it shows follows the database, Redis and the code paths that
refuse, reconcile and watch (apps/core/metrics.py, apps/instances/metrics.py, apps/billing/metrics.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import yaml
from django.conf import settings
from django.test import Client
from django.utils import timezone
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from apps.billing.stripe.models import MeterEventOutbox, StripeEvent
from apps.catalog.models import Region, RegionCapacity
from apps.core import metrics
from apps.instances import metrics as instance_metrics
from apps.operator.reconciler import reconcile
from apps.operator.watcher import watch_forever
from apps.quotas.services import quota_for
from tests.conftest import Actor
from tests.factories import TenantFactory
from tests.fixtures.kube import Sandbox, wait_until
from tests.instances.helpers import Catalog, instance_row, launch_body
from tests.operator.sandbox_support import SandboxTenant, connect

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(**extra: Any) -> Samples:
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


# ---- who may scrape ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_loopback_and_404_elsewhere_or_through_a_proxy(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert Client(REMOTE_ADDR="203.0.113.7").get("/metrics").status_code == 404
    # Through an ingress the client looks internal; a relayed request is never trusted by address.
    relayed = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert relayed.get("/metrics").status_code == 404
    assert Client().post("/metrics").status_code == 404
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.2.3.4").get("/metrics").status_code == 200
    assert Client().get("/metrics").status_code == 404  # loopback is no longer listed


@pytest.mark.django_db
def test_metrics_answer_the_bearer_token_from_anywhere_and_404_a_wrong_one(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-" + uuid.uuid4().hex
    outside = {"REMOTE_ADDR": "203.0.113.7", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}
    right = Client(**outside, HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}").get("/metrics")
    assert right.status_code == 200 and b"gpucloud_instances" in right.content
    assert Client(**outside, HTTP_AUTHORIZATION="Bearer wrong").get("/metrics").status_code == 404
    # A wrong token is refused even from an allowed network: it is a mistake worth noticing.
    assert Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics").status_code == 404


# ---- state read at scrape time ---------------------------------------------------------------------------


def test_instances_and_gpus_by_region_and_type(catalog: Catalog, owner: Actor) -> None:
    h100x2, a100x1 = catalog.instance_type("gpu-h100x2"), catalog.instance_type("gpu-a100x1")
    cpu = catalog.instance_type("cpu-4x")
    rows = [
        (h100x2, catalog.us_east, "running"),
        (h100x2, catalog.us_east, "running"),
        (h100x2, catalog.us_east, "pending"),
        (h100x2, catalog.eu_west, "running"),
        (a100x1, catalog.us_east, "stopped"),  # holds no GPU
        (a100x1, catalog.us_east, "terminated"),  # not counted at all
        (cpu, catalog.us_east, "running"),
    ]
    for n, (itype, region, state) in enumerate(rows):
        instance_row(
            tenant=owner.tenant,
            instance_type=itype,
            region=region,
            created_by=owner.user,
            name=f"i{n}",
            state=state,
        )
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(gpus=24)

    samples = scrape()

    assert (
        value(samples, "gpucloud_instances", state="running", region="us-east-1", instance_type="gpu-h100x2")
        == 2
    )
    assert (
        value(samples, "gpucloud_instances", state="pending", region="us-east-1", instance_type="gpu-h100x2")
        == 1
    )
    assert (
        value(samples, "gpucloud_instances", state="running", region="eu-west-1", instance_type="gpu-h100x2")
        == 1
    )
    assert (
        value(samples, "gpucloud_instances", state="stopped", region="us-east-1", instance_type="gpu-a100x1")
        == 1
    )
    assert (
        value(samples, "gpucloud_instances", state="running", region="us-east-1", instance_type="cpu-4x") == 1
    )
    assert not any(
        name == "gpucloud_instances" and ("state", "terminated") in labels for name, labels in samples
    )
    assert value(samples, "gpucloud_gpus_allocated", region="us-east-1", gpu_type="h100-80gb") == 6
    assert value(samples, "gpucloud_gpus_allocated", region="eu-west-1", gpu_type="h100-80gb") == 2
    # An idle pool shows 0 allocated next to its capacity, so utilisation is computable for every pool.
    assert (
        "gpucloud_gpus_allocated",
        frozenset({("region", "us-east-1"), ("gpu_type", "a100-80gb")}),
    ) in samples
    assert value(samples, "gpucloud_gpus_allocated", region="us-east-1", gpu_type="a100-80gb") == 0
    assert value(samples, "gpucloud_gpus_capacity", region="us-east-1", gpu_type="h100-80gb") == 24
    assert value(samples, "gpucloud_gpus_capacity", region="us-east-1", gpu_type="a100-80gb") == 32
    assert value(samples, "gpucloud_metrics_collector_up", collector="InstanceCollector") == 1


@pytest.mark.django_db
def test_instances_stuck_in_a_transitional_state_are_counted(
    catalog: Catalog, owner: Actor, settings: Any
) -> None:
    """An instance that has waited in pending, provisioning, starting, stopping or terminating longer than
    INSTANCE_STUCK_AFTER_SECONDS is stuck; a fresh one, or one that got where it was going, is not."""
    settings.INSTANCE_STUCK_AFTER_SECONDS = 900
    h100 = catalog.instance_type("gpu-h100x1")
    now = timezone.now()
    rows = [
        ("provisioning", catalog.us_east, now - timedelta(seconds=1800)),  # stuck (the oldest)
        ("provisioning", catalog.us_east, now - timedelta(seconds=901)),  # stuck
        ("provisioning", catalog.us_east, now - timedelta(seconds=60)),  # on its way
        ("stopping", catalog.eu_west, now - timedelta(hours=2)),  # stuck
        ("running", catalog.us_east, now - timedelta(days=3)),  # arrived: never stuck
        ("stopped", catalog.us_east, now - timedelta(days=3)),
    ]
    for n, (state, region, since) in enumerate(rows):
        instance_row(
            tenant=owner.tenant,
            instance_type=h100,
            region=region,
            created_by=owner.user,
            name=f"s{n}",
            state=state,
            state_changed_at=since,
        )

    samples = scrape()

    assert value(samples, "gpucloud_instances_stuck", state="provisioning", region="us-east-1") == 2
    assert value(samples, "gpucloud_instances_stuck", state="stopping", region="eu-west-1") == 1
    running = ("gpucloud_instances_stuck", frozenset({("state", "running"), ("region", "us-east-1")}))
    assert running not in samples
    oldest = value(
        samples, "gpucloud_instances_transition_oldest_seconds", state="provisioning", region="us-east-1"
    )
    assert 1800 <= oldest < 1900


def test_admission_refusals_are_counted_by_reason(catalog: Catalog, make_actor: Callable[..., Actor]) -> None:
    def refusals() -> dict[str, float]:
        samples = scrape()
        reasons = ("quota_instances", "quota_gpus", "no_capacity", "insufficient_funds", "region_unavailable")
        return {r: value(samples, "gpucloud_admission_refusals_total", reason=r) for r in reasons}

    before = refusals()
    broke = make_actor(tenant=TenantFactory(credit=0))
    limited = make_actor()
    limits = quota_for(limited.tenant)
    limits.max_gpus = 0
    limits.save()
    crowded = make_actor()
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(gpus=0)

    assert post_launch(broke).status_code == 402
    assert post_launch(broke).status_code == 402
    assert post_launch(limited).status_code == 409
    assert post_launch(crowded).status_code == 409

    after = refusals()
    assert after["insufficient_funds"] - before["insufficient_funds"] == 2
    assert after["quota_gpus"] - before["quota_gpus"] == 1
    assert after["no_capacity"] - before["no_capacity"] == 1
    assert after["quota_instances"] == before["quota_instances"]
    assert after["region_unavailable"] == before["region_unavailable"]


def post_launch(actor: Actor) -> Any:
    return actor.token_client().post(actor.url("/instances"), launch_body(), format="json")


def test_stripe_outbox_backlog_and_unprocessed_webhook_events(owner: Actor) -> None:
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    for n, (sent, attempts, age) in enumerate([(False, 0, 60), (False, 3, 7200), (True, 1, 9000)]):
        MeterEventOutbox.objects.create(
            tenant=owner.tenant,
            meter="gpu_seconds",
            hour_start=hour - timedelta(hours=n + 1),
            value=3600,
            identifier=f"{owner.tenant.pk}:gpu_seconds:{n}",
            attempts=attempts,
            sent_at=now if sent else None,
            created_at=now - timedelta(seconds=age),
        )
    StripeEvent.objects.create(id="evt_waiting", type="invoice.paid")
    StripeEvent.objects.create(id="evt_done", type="invoice.paid", processed_at=now)

    samples = scrape()

    assert value(samples, "gpucloud_stripe_outbox_pending") == 2
    assert value(samples, "gpucloud_stripe_outbox_failing") == 1
    assert 7200 <= value(samples, "gpucloud_stripe_outbox_oldest_pending_age_seconds") < 9000
    assert value(samples, "gpucloud_stripe_webhook_events_unprocessed") == 1


@pytest.fixture
def test_queue(settings: Any) -> Iterator[str]:
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield queue
    broker.delete(queue, f"{queue}\x06\x163")
    broker.close()


@pytest.mark.django_db
def test_celery_queue_depth_is_the_length_of_the_redis_lists(test_queue: str) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.rpush(test_queue, "a", "b", "c")
    broker.rpush(f"{test_queue}\x06\x163", "d")  # a task sent with priority 3
    broker.close()
    samples = scrape()
    assert value(samples, "gpucloud_celery_queue_length", queue=test_queue) == 4
    assert value(samples, "gpucloud_celery_broker_up") == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.django_db
def test_scrape_still_answers_when_redis_is_down(settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    samples = scrape()
    assert value(samples, "gpucloud_celery_broker_up") == 0
    assert not any(name == "gpucloud_celery_queue_length" for name, _ in samples)
    assert value(samples, "gpucloud_metrics_collector_up", collector="InstanceCollector") == 1


# ---- django-prometheus ----------------------------------------------------------------------------------


def _total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


@pytest.mark.django_db
def test_django_prometheus_request_and_database_series_are_served(owner: Actor) -> None:
    """Its middleware (first and last in MIDDLEWARE) and its PostgreSQL backend (DATABASE_ENGINE) are what
    the documented django_http_* and django_db_* series come from: one API request shows in both."""
    before = scrape()
    response = owner.token_client().get(owner.url("/instances"))
    assert response.status_code == 200
    after = scrape()
    names = {name for name, _ in after}
    assert any(name.startswith("django_http_") for name in names)
    assert any(name.startswith("django_db_") for name in names)
    for name, labels in (
        ("django_http_requests_total_by_method_total", {"method": "GET"}),
        ("django_http_responses_total_by_status_total", {"status": "200"}),
        ("django_http_requests_latency_seconds_by_view_method_count", {"method": "GET"}),
        ("django_db_execute_total", {"vendor": "postgresql", "alias": "default"}),
        ("django_db_query_duration_seconds_count", {"vendor": "postgresql", "alias": "default"}),
    ):
        assert _total(after, name, **labels) > _total(before, name, **labels), name


# ---- the documented alerts -------------------------------------------------------------------------------


def _documented_alerts() -> dict[str, str]:
    text = (settings.BASE_DIR / "docs" / "operations.md").read_text()
    section = text.split("## Alerts worth setting", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    return {rule["alert"]: " ".join(str(rule["expr"]).split()) for rule in rules}


@pytest.mark.django_db
def test_documented_alerts_take_the_max_of_state_gauges_over_web_pods() -> None:
    """Every web pod serves the same state gauges; an alert that sums them over pods multiplies them by the
    number of web replicas. Each use of one in docs/operations.md's alerts is `max(...)` or
    `max by (...) (...)` first (the per-scrape `*_up` gauges are read per pod)."""
    state = {
        family.name
        for family in metrics._StateCollectors().collect()
        if family.type == "gauge" and not family.name.endswith("_up")
    }
    assert {"gpucloud_instances", "gpucloud_celery_queue_length", "gpucloud_gpus_capacity"} <= state
    alerts = _documented_alerts()
    used = 0
    for alert, expr in alerts.items():
        for name in state:
            uses = len(re.findall(rf"\b{name}\b", expr))
            under_max = len(re.findall(rf"\bmax(?:\s+by\s*\([^)]*\))?\s*\(\s*{name}\b", expr))
            assert uses == under_max, f"{alert}: {name} is not aggregated with max over pods: {expr}"
            used += uses
    assert used >= 5  # the queue, pool, stuck-pending and Stripe alerts
    assert "sum(max by (queue) (gpucloud_celery_queue_length))" in alerts["GpucloudQueueBacklog"]


# ---- operator code paths -------------------------------------------------------------------------------


def test_watch_lag_is_the_time_since_the_objects_last_change() -> None:
    what = f"pods@lag-{uuid.uuid4().hex[:6]}"
    resource, region = what.split("@")
    pod = {
        "metadata": {
            "creationTimestamp": "2030-01-01T00:00:00Z",
            "managedFields": [{"time": "2030-01-01T00:00:10Z"}, {"time": "2030-01-01T00:00:20Z"}],
        }
    }
    changed = instance_metrics.last_change(pod)
    assert changed is not None
    instance_metrics.observe_watch_lag(what, "MODIFIED", pod, now=changed + 42.0)
    instance_metrics.observe_watch_lag(what, "DELETED", pod, now=changed + 999.0)  # not a change: ignored
    samples = parse(metrics.scrape().decode())
    assert value(samples, "gpucloud_operator_watch_lag_seconds_count", resource=resource, region=region) == 1
    assert value(samples, "gpucloud_operator_watch_lag_seconds_sum", resource=resource, region=region) == 42.0
    assert (
        value(
            samples, "gpucloud_operator_watch_lag_seconds_bucket", resource=resource, region=region, le="30.0"
        )
        == 0
    )
    assert (
        value(
            samples, "gpucloud_operator_watch_lag_seconds_bucket", resource=resource, region=region, le="60.0"
        )
        == 1
    )


def test_the_watch_loop_records_lag_for_events_from_a_real_apiserver(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    region = f"w{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube_client)
    stop = threading.Event()
    seen: list[str] = []
    thread = threading.Thread(
        target=watch_forever,
        args=(core.list_namespaced_pod, lambda kind, obj: seen.append(kind), stop),
        kwargs={"what": f"pods@{region}", "timeout_seconds": 5, "namespace": kube_namespace},
        daemon=True,
    )
    thread.start()
    try:
        core.create_namespaced_pod(
            kube_namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "lagged"},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox"}],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        )

        touches = iter(range(1_000_000))

        def counted() -> float:
            samples = parse(metrics.scrape().decode())
            name = "gpucloud_operator_watch_lag_seconds_count"
            count = value(samples, name, resource="pods", region=region)
            if not count:
                # A pod created before the watch began arrives in its initial list, which is not measured
                # (test_listed_objects_are_not_measured_as_lag): a change after that is a watch event.
                body = {"metadata": {"annotations": {"touched": str(next(touches))}}}
                core.patch_namespaced_pod("lagged", kube_namespace, body)
            return count

        wait_until(lambda: counted() >= 1, timeout=30, what="a watch event measured")
    finally:
        stop.set()
        thread.join(40)
    assert {"ADDED", "MODIFIED"} & set(seen)


def test_listed_objects_are_not_measured_as_lag(kube_client: client.ApiClient, kube_namespace: str) -> None:
    # A list after a 410 hands over objects that may have last changed hours ago: not a delay of ours.
    region = f"l{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "listed"},
            "spec": {
                "containers": [{"name": "main", "image": "busybox"}],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("listed", kube_namespace).status.phase == "Running",
        timeout=30,
        what="the pod running before the watch starts",
    )
    stop = threading.Event()
    seen: list[str] = []
    thread = threading.Thread(
        target=watch_forever,
        args=(core.list_namespaced_pod, lambda kind, obj: seen.append(kind), stop),
        kwargs={"what": f"pods@{region}", "timeout_seconds": 5, "namespace": kube_namespace},
        daemon=True,
    )
    thread.start()
    try:
        wait_until(lambda: "ADDED" in seen, timeout=30, what="the listed pod handed over")
    finally:
        stop.set()
        thread.join(40)
    samples = parse(metrics.scrape().decode())
    counted = value(samples, "gpucloud_operator_watch_lag_seconds_count", resource="pods", region=region)
    assert counted == seen.count("MODIFIED")  # a late status update is an event; the listing is not


def reconcile_counts() -> dict[str, float]:
    samples = parse(metrics.scrape().decode())
    return {
        outcome: value(samples, "gpucloud_reconcile_duration_seconds_count", kind="instance", outcome=outcome)
        for outcome in ("ok", "error")
    }


def test_reconcile_duration_is_observed_for_passes_that_succeed_and_fail(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, owner: Actor
) -> None:
    connect(catalog.us_east, sandbox)
    tenant = SandboxTenant(actor=owner, kube_clients=kube_clients)
    try:
        before = reconcile_counts()
        launched = tenant.launch(**launch_body())  # its on-commit task reconciles once
        reconcile(launched["id"])
        middle = reconcile_counts()
        assert middle["ok"] - before["ok"] >= 2
        assert middle["error"] == before["error"]
    finally:
        tenant.cleanup()

    # A region whose apiserver is gone: the pass raises, and is still timed, as an error.
    dead = Region.objects.create(slug="dead-1", name="DEAD-1", position=9, sandbox=True)  # may skip TLS
    dead.set_kubeconfig(_kubeconfig_for(f"https://127.0.0.1:{_closed_port()}"))
    dead.save()
    itype = catalog.instance_type("gpu-h100x1")
    row = instance_row(
        tenant=owner.tenant, instance_type=itype, region=dead, created_by=owner.user, name="d1"
    )
    with pytest.raises(Exception):  # noqa: B017 - whichever connection error the client raises
        reconcile(row.pk)
    assert reconcile_counts()["error"] - middle["error"] == 1


def _kubeconfig_for(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters: [{{name: dead, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: dead, user: {token: not-a-real-token}}]\n"
        "contexts: [{name: dead, context: {cluster: dead, user: dead}}]\n"
    )


# ---- the worker's and the operator's exporters ---------------------------------------------------------


def test_process_exporter_serves_this_process_on_the_configured_loopback_port(settings: Any) -> None:
    port = _closed_port()
    settings.METRICS_BIND_ADDRESS = "127.0.0.1"
    assert metrics.serve_process_metrics(0) is None  # port 0: off
    server = metrics.serve_process_metrics(port)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert "gpucloud_reconcile_duration_seconds" in body
        assert "gpucloud_instances" not in body  # state metrics are the web process's alone
        assert metrics.serve_process_metrics(port) is None  # in use: logged, not raised
    finally:
        server.shutdown()
        server.server_close()


def test_multiprocess_mode_adds_up_every_process(tmp_path: Any) -> None:
    """Gunicorn workers and Celery pool processes share PROMETHEUS_MULTIPROC_DIR; any of them scraped
    reports the sum of all."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
    }
    count = "from apps.core import metrics; metrics.refused('no_capacity'); metrics.refused('no_capacity')"
    read = (
        "from prometheus_client import generate_latest; from apps.core import metrics;"
        "print(generate_latest(metrics.process_registry()).decode())"
    )
    for code in (count, count):
        _django_python(code, env)
    samples = parse(_django_python(read, env))
    assert value(samples, "gpucloud_admission_refusals_total", reason="no_capacity") == 4


def _django_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
