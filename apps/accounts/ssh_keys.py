"""Parsing and fingerprinting of OpenSSH public keys (ed25519, ECDSA, RSA of 2048 bits or more)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

MIN_RSA_BITS = 2048


class InvalidSshKey(ValueError):
    pass


@dataclass(frozen=True)
class ParsedKey:
    key_type: str
    bits: int
    fingerprint: str
    normalized: str  # "type base64 [comment]" on one line


def parse(text: str) -> ParsedKey:
    line = text.strip()
    if "PRIVATE KEY" in line:
        raise InvalidSshKey(
            "This looks like a private key. Upload the .pub file instead, and rotate this key."
        )
    if "\n" in line or "\r" in line:
        raise InvalidSshKey("Paste exactly one public key, on one line.")
    parts = line.split(None, 2)
    if len(parts) < 2 or "\x00" in line:
        raise InvalidSshKey("Not an OpenSSH public key (expected 'ssh-ed25519 AAAA... comment').")
    if "-cert-" in parts[0]:
        raise InvalidSshKey("This is an SSH certificate; upload the public key itself (the .pub file).")
    try:
        # Strict base64, so the fingerprint and the stored key are exactly the key that was parsed.
        blob = base64.b64decode(parts[1], validate=True)
        encoded = base64.b64encode(blob).decode()
        key = load_ssh_public_key(f"{parts[0]} {encoded}".encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidSshKey("Not a valid OpenSSH public key.") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        key_type, bits = "ed25519", 256
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits = f"ecdsa-{key.curve.name}", key.curve.key_size
    elif isinstance(key, rsa.RSAPublicKey):
        key_type, bits = "rsa", key.key_size
        if bits < MIN_RSA_BITS:
            raise InvalidSshKey(f"RSA keys must have at least {MIN_RSA_BITS} bits; this one has {bits}.")
    else:
        raise InvalidSshKey("Only ed25519, ECDSA and RSA keys are accepted.")
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    normalized = " ".join([parts[0], encoded, *parts[2:]])
    return ParsedKey(key_type=key_type, bits=bits, fingerprint=fingerprint, normalized=normalized)
