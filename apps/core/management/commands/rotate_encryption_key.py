"""`manage.py rotate_encryption_key`: re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEYS key,
so older keys can be removed (docs/operations.md "Rotating secrets")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.core import crypto

# (model label, field) of every column written by crypto.encrypt.
ENCRYPTED_FIELDS = (
    ("catalog.Region", "kubeconfig_encrypted"),
    ("storage_objects.ObjectStorageAccount", "presign_secret_encrypted"),
)


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (region kubeconfigs, object storage presign keys) with the first key of "
        "FIELD_ENCRYPTION_KEYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-secret-key",
            action="store_true",
            help="Also read values encrypted with the key derived from SECRET_KEY (installations that ran "
            "without FIELD_ENCRYPTION_KEYS); run this before changing SECRET_KEY.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.apps import apps

        extra = (crypto.derived_key(),) if options["from_secret_key"] else ()
        total = 0
        with transaction.atomic():  # all or nothing: a value no key reads stops the rotation
            for label, field in ENCRYPTED_FIELDS:
                model = apps.get_model(label)
                rows = model.objects.select_for_update().exclude(**{field: ""}).only("pk", field)
                for row in rows:
                    try:
                        setattr(row, field, crypto.rotate(getattr(row, field), extra_keys=extra))
                    except ValueError as exc:
                        raise CommandError(f"{label} {row.pk}: {exc}") from exc
                    row.save(update_fields=[field])
                    total += 1
        self.stdout.write(f"re-encrypted {total} value(s) with the first key")
