"""Encryption at rest for secrets we must be able to read back (cluster credentials).

Fernet (AES-128-CBC + HMAC-SHA256) with keys from FIELD_ENCRYPTION_KEYS; the first key encrypts, all keys
decrypt, so keys can be rotated. Without the setting (dev and test), a key is derived from SECRET_KEY.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet() -> MultiFernet:
    keys = list(getattr(settings, "FIELD_ENCRYPTION_KEYS", []) or [])
    if not keys:
        digest = hashlib.sha256(f"gpucloud-field-encryption:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("Cannot decrypt: wrong FIELD_ENCRYPTION_KEYS or corrupted value.") from exc
