"""Each instance's SSH host key: derived from the deployment's secret and the instance's id, never stored.

The platform's SSH server (images/sshd/) reads it from the instance's Secret, so an instance keeps one host
key across stop and start, restarts and moves between nodes; the API publishes the public half with the
connection (`host_key`, `known_hosts`), so `gpucloud ssh` checks the server strictly instead of trusting it
on first use. HKDF-SHA256 makes the 32-byte Ed25519 seed from SECRET_KEY with the instance id as context: the
key of one instance tells nothing of another's or of the secret. Rotating SECRET_KEY changes every instance's
host key (clients then see a changed key once).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"gpucloud instance ssh host key v1"


def _private_key(instance_id: Any, secret: str) -> Ed25519PrivateKey:
    if not secret:
        raise ValueError("a secret is required to derive host keys")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=str(instance_id).encode()).derive(
        secret.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


# Derived once per instance and process: a resync reads every running instance's public key (its
# connection) and a reconcile the private one (its Secret), about 0.2 ms each time, 1 s a pass at 5,000.
CACHED_KEYS = 20_000


def host_private_key(instance_id: Any, *, secret: str) -> str:
    """The instance's host key as PKCS#8 PEM, which the SSH server reads. Not OpenSSH's own format: that one
    carries a random check number, so the same key would encode differently every time and the Secret would
    change at every reconcile."""
    return _private_pem(str(instance_id), secret)


def host_public_key(instance_id: Any, *, secret: str) -> str:
    """Its public half as an authorized_keys/known_hosts line body: `ssh-ed25519 AAAA...`."""
    return _public_line(str(instance_id), secret)


@lru_cache(maxsize=CACHED_KEYS)
def _private_pem(instance_id: str, secret: str) -> str:
    pkcs8 = serialization.PrivateFormat.PKCS8
    encoded = _private_key(instance_id, secret).private_bytes(
        serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()
    )
    return encoded.decode("ascii")


@lru_cache(maxsize=CACHED_KEYS)
def _public_line(instance_id: str, secret: str) -> str:
    public = _private_key(instance_id, secret).public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode(
        "ascii"
    )
