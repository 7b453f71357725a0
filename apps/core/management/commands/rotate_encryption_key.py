"""`manage.py rotate_encryption_key`: re-encrypt every stored secret of one key set with that set's first
key, so older keys can be removed (docs/operations.md "Rotating secrets"). Run it where the key set is:
`--keys field` (the default) in the operator's pod, `--keys logs` and `--keys storage` in web's."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.core import crypto

KEY_SETS = {"field": crypto.FIELD, "logs": crypto.LOGS, "storage": crypto.STORAGE}
# (model label, field, key set) of every column written by crypto.encrypt.
ENCRYPTED_FIELDS = (
    ("catalog.Region", "kubeconfig_encrypted", crypto.FIELD),
    ("catalog.Region", "logs_kubeconfig_encrypted", crypto.LOGS),
    ("storage_objects.ObjectStorageAccount", "presign_secret_encrypted", crypto.STORAGE),
)


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets with the first key of a key set: region kubeconfigs "
        "(FIELD_ENCRYPTION_KEYS, --keys field), region logs kubeconfigs "
        "(LOGS_ENCRYPTION_KEYS, --keys logs) or object storage presign keys "
        "(STORAGE_ENCRYPTION_KEYS, --keys storage)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keys", choices=sorted(KEY_SETS), default="field", help="The key set.")
        parser.add_argument(
            "--from-secret-key",
            action="store_true",
            help="Also read values encrypted with the key derived from SECRET_KEY (installations that ran "
            "without the key set); run this before changing SECRET_KEY.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.apps import apps

        keys = KEY_SETS[options["keys"]]
        if not crypto.available(keys):
            raise CommandError(f"This process holds no {keys.setting}: run this where it is set.")
        extra = (crypto.derived_key(keys),) if options["from_secret_key"] else ()
        total = 0
        with transaction.atomic():  # all or nothing: a value no key reads stops the rotation
            for label, field, field_keys in ENCRYPTED_FIELDS:
                if field_keys != keys:
                    continue
                model = apps.get_model(label)
                rows = model.objects.select_for_update().exclude(**{field: ""}).only("pk", field)
                for row in rows:
                    try:
                        setattr(row, field, crypto.rotate(getattr(row, field), keys=keys, extra_keys=extra))
                    except ValueError as exc:
                        raise CommandError(f"{label} {row.pk}: {exc}") from exc
                    row.save(update_fields=[field])
                    total += 1
        self.stdout.write(f"re-encrypted {total} value(s) with the first key of {keys.setting}")
