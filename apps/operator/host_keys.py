"""Each instance's SSH host key: derived from the deployment's secret and the instance's id, never stored.

The platform's SSH server (images/sshd/) reads it from the instance's Secret, so an instance keeps one host
key across stop and start, restarts and moves between nodes; the API publishes the public half with the
connection (`host_key`, `known_hosts`), so `gpucloud ssh` checks the server strictly instead of trusting it
on first use. HKDF-SHA256 makes the 32-byte Ed25519 seed from SECRET_KEY with the instance id as context: the
key of one instance tells nothing of another's or of the secret. Rotating SECRET_KEY changes every instance's
host key (clients then see a changed key once).
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"gpucloud instance ssh host key v1"


def _private_key(instance_id: Any, secret: str, salt: bytes = SALT) -> Ed25519PrivateKey:
    if not secret:
        raise ValueError("a secret is required to derive host keys")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=str(instance_id).encode()).derive(
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


# A cluster's own key pair, which its nodes use to reach one another (mpirun, DeepSpeed's launcher): derived
# like the host keys, under another salt, so it is neither stored nor the same as any host key.
CLUSTER_SALT = b"gpucloud cluster ssh key v1"


def cluster_key_pair(cluster_id: Any, *, secret: str) -> tuple[str, str]:
    """(private key in OpenSSH's format, public key line) of a cluster. OpenSSH's format with a check number
    taken from the key itself, not a random one, so the Secret holding it is the same at every reconcile;
    the ssh client reads this format on any image (PKCS#8 needs a recent one)."""
    return _cluster_pair(str(cluster_id), secret)


@lru_cache(maxsize=1024)
def _cluster_pair(cluster_id: str, secret: str) -> tuple[str, str]:
    key = _private_key(cluster_id, secret, CLUSTER_SALT)
    raw = serialization.Encoding.Raw
    seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return _openssh_private(seed, public, check=int.from_bytes(seed[:4], "big")), line.decode("ascii")


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _openssh_private(seed: bytes, public: bytes, *, check: int) -> str:
    """The `openssh-key-v1` container, unencrypted, for one Ed25519 key (PROTOCOL.key in OpenSSH)."""
    kind = b"ssh-ed25519"
    public_blob = _string(kind) + _string(public)
    private = (
        check.to_bytes(4, "big") * 2 + public_blob + _string(seed + public) + _string(b"gpucloud-cluster")
    )
    private += bytes(range(1, 1 + (-len(private) % 8)))
    body = b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"") + (1).to_bytes(4, "big")
    body += _string(public_blob) + _string(private)
    encoded = base64.b64encode(body).decode("ascii")
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    )
