"""`manage.py operator`: the long-running Kubernetes operator (see docs/operator.md)."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core import metrics
from apps.operator.operator_loop import Operator, OperatorConfig

logger = logging.getLogger(__name__)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class Command(BaseCommand):
    help = "Watch and reconcile every region's cluster (one leader per region; stops on SIGTERM/SIGINT)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--region", action="append", default=[], help="Only this region slug (repeatable)."
        )
        parser.add_argument("--resync-seconds", type=float, default=30.0)
        parser.add_argument("--lock-retry-seconds", type=float, default=5.0)
        parser.add_argument("--watch-timeout-seconds", type=int, default=30)
        parser.add_argument(
            "--pod-workers", type=_positive, default=4, help="Threads recording pod events, per region."
        )
        parser.add_argument(
            "--change-workers",
            type=_positive,
            default=4,
            help="Threads reconciling instances as their changes commit (LISTEN/NOTIFY), per region.",
        )
        parser.add_argument(
            "--resync-workers",
            type=_positive,
            default=8,
            help="Instances a resync reconciles at once per region (pod creations in flight).",
        )
        parser.add_argument("--no-events", action="store_true", help="Do not copy Kubernetes Events.")
        parser.add_argument(
            "--gc-unknown-tenants",
            action="store_true",
            help="Also delete gpucloud objects of tenants unknown to this database. Only for clusters that "
            "serve this control plane alone; the default leaves them (shared clusters such as the sandbox).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = OperatorConfig(
            resync_seconds=options["resync_seconds"],
            lock_retry_seconds=options["lock_retry_seconds"],
            watch_timeout_seconds=options["watch_timeout_seconds"],
            pod_workers=options["pod_workers"],
            change_workers=options["change_workers"],
            resync_workers=options["resync_workers"],
            watch_events=not options["no_events"],
            gc_known_tenants_only=not options["gc_unknown_tenants"],
        )
        operator = Operator(config, regions=options["region"])

        def stop(signum: int, _frame: Any) -> None:
            logger.info("operator: signal %s, stopping", signum)
            operator.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        metrics.serve_process_metrics(int(settings.METRICS_OPERATOR_PORT))
        self.stdout.write(f"operator: starting (regions: {', '.join(options['region']) or 'all'})")
        self.stdout.flush()
        operator.run()
        self.stdout.write("operator: stopped")
