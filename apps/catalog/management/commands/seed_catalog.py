from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.catalog.catalog_seed import seed_catalog
from apps.core import request_context


class Command(BaseCommand):
    help = "Create or update the starter catalog; regions and capacity come from a fleet file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fleet", default=str(Path(settings.BASE_DIR) / "sandbox" / "fleet.yaml"))

    def handle(self, *args: Any, **options: Any) -> None:
        fleet = Path(options["fleet"])
        with request_context.bind(via="command"):
            regions = seed_catalog(fleet if fleet.exists() else None)
        self.stdout.write(f"catalog seeded; regions: {', '.join(regions) or 'none'}")
