"""Encryption at rest for secrets we must be able to read back (cluster credentials).

Fernet (AES-128-CBC + HMAC-SHA256). Each kind of credential has its own key set, so that a process holds
only the keys of the credentials its job needs (docs/operations.md, "Encryption keys"):

- `FIELD`: FIELD_ENCRYPTION_KEYS, the regions' operator kubeconfigs (cluster-wide rights); the operator and
  the worker hold them, web never does.
- `LOGS`: LOGS_ENCRYPTION_KEYS, the regions' logs kubeconfigs (`get pods/log` in tenant namespaces only);
  web alone holds them.
- `STORAGE`: STORAGE_ENCRYPTION_KEYS, each tenant's object storage presign secret (an S3 identity limited
  to that tenant's buckets); web (which signs URLs) and the worker hold them.

In each set the first key encrypts and all keys decrypt, so keys can be rotated. Where a set is not
configured, dev and test derive a key from SECRET_KEY (ENCRYPTION_KEYS_FROM_SECRET_KEY); production does
not, so a process that was not given a key set can neither read nor write what it protects
(`KeysUnavailable`), even though every process has SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@dataclass(frozen=True)
class KeySet:
    setting: str  # the setting (and environment variable) holding the comma-separated keys
    derivation: str  # label of the key derived from SECRET_KEY where allowed


FIELD = KeySet("FIELD_ENCRYPTION_KEYS", "gpucloud-field-encryption")
LOGS = KeySet("LOGS_ENCRYPTION_KEYS", "gpucloud-logs-encryption")
STORAGE = KeySet("STORAGE_ENCRYPTION_KEYS", "gpucloud-storage-encryption")


class KeysUnavailable(ValueError):
    """This process was not given the key set (by design, e.g. web and FIELD_ENCRYPTION_KEYS)."""

    def __init__(self, keys: KeySet):
        super().__init__(f"This process holds no {keys.setting}.")
        self.keys = keys


def derived_key(keys: KeySet = FIELD) -> str:
    """The key used without the key set's setting where that is allowed: derived from SECRET_KEY."""
    digest = hashlib.sha256(f"{keys.derivation}:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _configured(keys: KeySet) -> list[str]:
    return list(getattr(settings, keys.setting, []) or [])


def available(keys: KeySet = FIELD) -> bool:
    """Whether this process can encrypt and decrypt with the key set."""
    return bool(_configured(keys)) or bool(getattr(settings, "ENCRYPTION_KEYS_FROM_SECRET_KEY", False))


def _fernet(keys: KeySet, extra_keys: tuple[str, ...] = ()) -> MultiFernet:
    if not available(keys):
        raise KeysUnavailable(keys)
    configured = _configured(keys) or [derived_key(keys)]
    return MultiFernet([Fernet(key) for key in [*configured, *extra_keys]])


def encrypt(plaintext: str, *, keys: KeySet = FIELD) -> str:
    return _fernet(keys).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, keys: KeySet = FIELD) -> str:
    try:
        return _fernet(keys).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(f"Cannot decrypt: wrong {keys.setting} or corrupted value.") from exc


def rotate(ciphertext: str, *, keys: KeySet = FIELD, extra_keys: tuple[str, ...] = ()) -> str:
    """Re-encrypt with the first key; `extra_keys` may still decrypt (a key being retired)."""
    try:
        return _fernet(keys, extra_keys).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(f"Cannot decrypt: wrong {keys.setting} or corrupted value.") from exc
