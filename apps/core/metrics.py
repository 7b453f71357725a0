"""Prometheus metrics: /metrics of the web process, the exporters of the worker and the operator, the
admission-refusal counter and the Celery queue depth (docs/operations.md "Metrics").

Three kinds of metric:
- process metrics (django-prometheus requests and queries, our counters and histograms) live in each
  process. With PROMETHEUS_MULTIPROC_DIR set (gunicorn workers, Celery's prefork pool) every process writes
  them to files there and whichever process is scraped adds them all up;
- state metrics (instances, GPUs, Stripe outbox, queue depth) are read from the database or Redis when
  scraped, by the collectors in SCRAPE_COLLECTORS, and served by web alone (not by the worker's or the
  operator's exporter) but by every web pod: with N web replicas Prometheus stores N copies of each, one
  per scraped pod, so queries must aggregate them with max (`max by (queue) (...)`), never sum them over
  pods;
- web serves both at /metrics (guarded: `allowed`); the worker and the operator serve their process
  metrics on METRICS_BIND_ADDRESS:METRICS_{WORKER,OPERATOR}_PORT.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

ADMISSION_REFUSALS = Counter(
    "gpucloud_admission_refusals",
    "Launches and starts refused, by reason: quota_<resource>, no_capacity, region_unavailable, "
    "insufficient_funds, payment_past_due.",
    ["reason"],
)

SCRAPE_COLLECTORS = (
    "apps.instances.metrics.InstanceCollector",
    "apps.billing.metrics.StripeBacklogCollector",
    "apps.core.metrics.CeleryQueueCollector",
)


def refused(reason: str) -> None:
    ADMISSION_REFUSALS.labels(reason=reason).inc()


# ---- collectors read at scrape time --------------------------------------------------------------------


class CeleryQueueCollector(Collector):
    """LLEN of each Celery queue in the Redis broker; `gpucloud_celery_broker_up` 0 when Redis is down
    (the scrape still answers)."""

    def collect(self) -> Iterator[Metric]:
        import redis

        depth = GaugeMetricFamily(
            "gpucloud_celery_queue_length", "Tasks waiting in each Celery queue.", labels=["queue"]
        )
        up = GaugeMetricFamily("gpucloud_celery_broker_up", "1 when the broker answered this scrape.")
        url = str(settings.CELERY_BROKER_URL or "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return
        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                for queue in celery_queues():
                    # kombu keeps priorities other than the default in sibling lists "<queue>\x06\x16<n>".
                    keys = [queue, *(f"{queue}\x06\x16{n}" for n in range(1, 10))]
                    with client.pipeline(transaction=False) as pipe:
                        for key in keys:
                            pipe.llen(key)
                        depth.add_metric([queue], float(sum(pipe.execute())))
            finally:
                client.close()
        except redis.RedisError as exc:
            logger.warning("metrics: the Celery broker did not answer: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield depth


def celery_queues() -> list[str]:
    queues = {str(getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery") or "celery")}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            queues.add(str(route["queue"]))
    return sorted(queues)


class _StateCollectors(Collector):
    """The collectors of SCRAPE_COLLECTORS; one that fails (the database away) costs its own metrics and
    reports `gpucloud_metrics_collector_up` 0, not the whole scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "gpucloud_metrics_collector_up",
            "1 when the collector answered this scrape.",
            labels=["collector"],
        )
        for path in SCRAPE_COLLECTORS:
            name = path.rsplit(".", 1)[-1]
            try:
                metrics = list(import_string(path)().collect())
            except Exception:
                logger.exception("metrics: collector %s failed", name)
                up.add_metric([name], 0.0)
                continue
            up.add_metric([name], 1.0)
            yield from metrics
        yield up


class _Scrape(Collector):
    def __init__(self, sources: Iterable[Collector]):
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def process_registry() -> Collector:
    """This process's metrics, or every process's when they share PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def scrape() -> bytes:
    """What the web process's /metrics answers: process metrics plus the state collectors."""
    return generate_latest(_Scrape([process_registry(), _StateCollectors()]))


# ---- /metrics ------------------------------------------------------------------------------------------


def allowed(request: HttpRequest) -> bool:
    """From an allowed network and not relayed by a proxy (an ingress would make every visitor look
    internal), or bearing METRICS_TOKEN."""
    token = str(getattr(settings, "METRICS_TOKEN", "") or "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD") or not allowed(request):
        raise Http404("Not found.")  # the endpoint does not exist for the public
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)


# ---- worker and operator exporters ---------------------------------------------------------------------


def serve_process_metrics(port: int) -> Any:
    """Serve this process's metrics (every pool process's, with PROMETHEUS_MULTIPROC_DIR) on
    METRICS_BIND_ADDRESS:port in a daemon thread. Port 0 turns it off; a port in use is logged, not fatal:
    metrics must never stop the worker or the operator."""
    if not port:
        return None
    address = str(settings.METRICS_BIND_ADDRESS or "127.0.0.1")
    try:
        server, _thread = start_http_server(port, addr=address, registry=process_registry())
    except OSError as exc:
        logger.warning("metrics: cannot serve on %s:%s: %s", address, port, exc)
        return None
    logger.info("metrics: serving on %s:%s/metrics", address, port)
    return server


def start_worker_exporter(**_: Any) -> None:
    """Celery's worker_ready signal (the main process, once the pool is up)."""
    serve_process_metrics(int(settings.METRICS_WORKER_PORT))
