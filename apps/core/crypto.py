"""Encryption at rest for secrets we must be able to read back (cluster credentials).

Fernet (AES-128-CBC + HMAC-SHA256) with keys from FIELD_ENCRYPTION_KEYS; the first key encrypts, all keys
decrypt, so keys can be rotated. Without the setting (dev and test), a key is derived from SECRET_KEY.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def derived_key() -> str:
    """The key used without FIELD_ENCRYPTION_KEYS: derived from SECRET_KEY."""
    digest = hashlib.sha256(f"gpucloud-field-encryption:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _fernet(extra_keys: tuple[str, ...] = ()) -> MultiFernet:
    keys = list(getattr(settings, "FIELD_ENCRYPTION_KEYS", []) or []) or [derived_key()]
    return MultiFernet([Fernet(key) for key in [*keys, *extra_keys]])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("Cannot decrypt: wrong FIELD_ENCRYPTION_KEYS or corrupted value.") from exc


def rotate(ciphertext: str, *, extra_keys: tuple[str, ...] = ()) -> str:
    """Re-encrypt with the first key; `extra_keys` may still decrypt (a key being retired)."""
    try:
        return _fernet(extra_keys).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("Cannot decrypt: wrong FIELD_ENCRYPTION_KEYS or corrupted value.") from exc
