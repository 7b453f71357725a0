import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.catalog.catalog_seed import seed_catalog
from apps.catalog.kubeconfig import KubeconfigError, check_kubeconfig
from apps.catalog.models import Region
from apps.catalog.sandbox_paths import sandbox_index
from apps.catalog.services import announce_connected
from apps.core import request_context


def connect_regions(index_path: Path) -> list[str]:
    """Store each region's kubeconfig (encrypted) from an index
    {"regions": {slug: {"kubeconfig": path, "sandbox": bool}}}, the format the sandbox writes (with
    "sandbox": true). Point GPUCLOUD_REGION_KUBECONFIGS at your own index for real clusters. Every kubeconfig
    must pass check_kubeconfig (for its entry's sandbox flag) before any region is changed.

    An entry's `operator_kubeconfig`, when present, is the operator's credential instead of `kubeconfig`
    (the sandbox's `kubeconfig` is its administrator; its operator runs as a restricted user), and its
    `logs_kubeconfig` the console's credential for pod logs (docs/sandbox.md, "Identities")."""
    index = json.loads(index_path.read_text())
    checked = []
    for slug, entry in (index.get("regions") or {}).items():
        region = Region.objects.filter(slug=slug).first()
        if region is None:
            continue
        sandbox = entry.get("sandbox", False) is True
        texts: list[str | None] = []
        for path in (entry.get("operator_kubeconfig") or entry["kubeconfig"], entry.get("logs_kubeconfig")):
            if path is None:
                texts.append(None)
                continue
            text = Path(path).read_text()
            try:
                check_kubeconfig(text, sandbox=sandbox)
            except KubeconfigError as exc:
                raise ValueError(f"region {slug} ({path}): {exc}") from exc
            texts.append(text)
        operator_text = texts[0]
        assert operator_text is not None
        checked.append((region, operator_text, texts[1], sandbox))
    with transaction.atomic():
        for region, text, logs_text, sandbox in checked:
            region.set_kubeconfig(text)
            if logs_text is not None:
                region.set_logs_kubeconfig(logs_text)
            region.sandbox = sandbox
            region.save(update_fields=["kubeconfig_encrypted", "logs_kubeconfig_encrypted", "sandbox"])
            announce_connected(region)  # launches waiting there start now
    return [region.slug for region, *_ in checked]


class Command(BaseCommand):
    help = "Create or update the starter catalog; regions and capacity come from a fleet file, cluster "
    "connections from a kubeconfig index (the sandbox's by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fleet", default=str(Path(settings.BASE_DIR) / "sandbox" / "fleet.yaml"))
        parser.add_argument(
            "--kubeconfigs",
            # The sandbox instance's index: `default` (make run's) unless GPUCLOUD_SANDBOX_INSTANCE says.
            default=os.environ.get("GPUCLOUD_REGION_KUBECONFIGS") or str(sandbox_index()),
            help="JSON index of region kubeconfigs; 'none' leaves regions unconnected.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fleet = Path(options["fleet"])
        with request_context.bind(via="command"):
            regions = seed_catalog(fleet if fleet.exists() else None)
            connected: list[str] = []
            index = options["kubeconfigs"]
            if index != "none" and Path(index).exists():
                try:
                    connected = connect_regions(Path(index))
                except (OSError, ValueError, KeyError) as exc:
                    raise CommandError(f"Cannot read the kubeconfig index {index}: {exc}") from exc
        self.stdout.write(f"catalog seeded; regions: {', '.join(regions) or 'none'}")
        self.stdout.write(f"connected to clusters: {', '.join(connected) or 'none'}")
