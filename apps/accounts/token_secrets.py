"""The shape of API token secrets: `gpc_<prefix>_<secret>`; only a SHA-256 digest is stored.

A plain digest is enough because the secret is 240 random bits, unlike a password.
"""

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

TOKEN_RE = re.compile(r"^gpc_([a-z0-9]{10})_([A-Za-z0-9_-]{40})$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class NewSecret:
    plaintext: str
    prefix: str
    digest: str


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate() -> NewSecret:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(10))
    secret = secrets.token_urlsafe(30)[:40]
    plaintext = f"gpc_{prefix}_{secret}"
    return NewSecret(plaintext=plaintext, prefix=prefix, digest=digest(plaintext))


def parse_prefix(plaintext: str) -> str | None:
    match = TOKEN_RE.match(plaintext)
    return match.group(1) if match else None


def matches(plaintext: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(plaintext), stored_digest)
