"""`manage.py rotate_encryption_key`: stored kubeconfigs move to the first key, so the old one can go."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from apps.catalog.models import Region

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: abc}}]\n"


def _region(slug: str) -> Region:
    region = Region.objects.create(slug=slug, name=slug.upper(), position=1)
    region.set_kubeconfig(KUBECONFIG)
    region.save()
    return region


@pytest.mark.django_db
def test_values_are_readable_with_the_new_key_alone_after_rotation(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    region = _region("rot-1")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_key")
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert Region.objects.get(pk=region.pk).get_kubeconfig() == KUBECONFIG


@pytest.mark.django_db
def test_values_under_the_secret_key_derived_key_move_to_field_encryption_keys(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = []
    region = _region("rot-2")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError):  # without the flag the derived key is not tried: nothing changes
        call_command("rotate_encryption_key")
    call_command("rotate_encryption_key", "--from-secret-key")
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert Region.objects.get(pk=region.pk).get_kubeconfig() == KUBECONFIG


@pytest.mark.django_db
def test_each_key_set_rotates_on_its_own_and_only_where_it_is_held(settings: Any) -> None:
    field, old_logs, new_logs = (Fernet.generate_key().decode() for _ in range(3))
    settings.FIELD_ENCRYPTION_KEYS, settings.LOGS_ENCRYPTION_KEYS = [field], [old_logs]
    region = _region("rot-3")
    region.set_logs_kubeconfig(KUBECONFIG)
    region.save()
    stored_operator_credential = Region.objects.get(pk=region.pk).kubeconfig_encrypted

    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False
    settings.FIELD_ENCRYPTION_KEYS, settings.LOGS_ENCRYPTION_KEYS = [], [new_logs, old_logs]  # web's pod
    with pytest.raises(CommandError, match="holds no FIELD_ENCRYPTION_KEYS"):
        call_command("rotate_encryption_key")
    call_command("rotate_encryption_key", "--keys", "logs")
    settings.LOGS_ENCRYPTION_KEYS = [new_logs]
    region = Region.objects.get(pk=region.pk)
    assert region.get_logs_kubeconfig() == KUBECONFIG
    assert region.kubeconfig_encrypted == stored_operator_credential  # the other set was not touched


@pytest.mark.django_db
def test_presign_secrets_rotate_under_the_storage_key_set(settings: Any) -> None:
    """Object storage presign secrets are encrypted under STORAGE_ENCRYPTION_KEYS (web and the worker), not
    under the operator's FIELD_ENCRYPTION_KEYS, which web does not hold."""
    from apps.storage.objects.models import ObjectStorageAccount
    from tests.factories import TenantFactory

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False
    settings.FIELD_ENCRYPTION_KEYS, settings.STORAGE_ENCRYPTION_KEYS = [], [old]  # web's pod
    account = ObjectStorageAccount.objects.create(tenant=TenantFactory(), prefix="gpc-rot4-", iam_user="rot4")
    account.set_presign_credentials("AKIDROT4", "s3-secret")
    account.save()

    settings.STORAGE_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_key", "--keys", "storage")
    settings.STORAGE_ENCRYPTION_KEYS = [new]
    assert ObjectStorageAccount.objects.get(pk=account.pk).presign_credentials() == ("AKIDROT4", "s3-secret")
