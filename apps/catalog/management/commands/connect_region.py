"""`manage.py connect_region SLUG --kubeconfig FILE [--context NAME] [--logs-kubeconfig FILE]`.

Stores a region's credentials, each encrypted under its own key set, so it must run where that key set is:
the operator's kubeconfig (FIELD_ENCRYPTION_KEYS) in the operator's pod, the logs kubeconfig
(LOGS_ENCRYPTION_KEYS) in web's (docs/operations.md, "Adding a region"). FILE `-` reads standard input
(`kubectl exec -i ... < kubeconfig`), so the credential never lands on the pod's disk.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.catalog.models import Region
from apps.catalog.services import region_connect
from apps.core import crypto, request_context


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.read()
    with open(path) as handle:
        return handle.read()


class Command(BaseCommand):
    help = "Store a region's operator kubeconfig and/or logs kubeconfig (encrypted at rest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--kubeconfig", help="The operator's kubeconfig (a file, or - for stdin).")
        parser.add_argument("--context", help="The context of --kubeconfig to use (default: its current).")
        parser.add_argument("--logs-kubeconfig", help="The logs kubeconfig (a file, or - for stdin).")

    def handle(self, *args: Any, **options: Any) -> None:
        paths = [options["kubeconfig"], options["logs_kubeconfig"]]
        if paths == [None, None] and options["context"] is None:
            raise CommandError("Give --kubeconfig, --context or --logs-kubeconfig.")
        if paths.count("-") > 1:
            raise CommandError("Only one of --kubeconfig and --logs-kubeconfig can read standard input.")
        region = Region.objects.filter(slug=options["slug"]).first()
        if region is None:
            raise CommandError(f"No region {options['slug']!r}.")
        try:
            with request_context.bind(via="command"):
                region_connect(
                    actor=None,
                    region=region,
                    kubeconfig=_read(options["kubeconfig"]),
                    context=options["context"],
                    logs_kubeconfig=_read(options["logs_kubeconfig"]),
                )
        except crypto.KeysUnavailable as exc:
            raise CommandError(f"{exc} Run this where {exc.keys.setting} is set.") from exc
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"region {region.slug}: credentials stored")
