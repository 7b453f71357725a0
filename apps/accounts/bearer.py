"""The one reader of `Authorization: Bearer <token>` headers.

Token authentication (authentication.py) and the two-factor middleware (middleware.py) must agree on which
requests carry a token: the middleware lets them through to token authentication, so a header that the
middleware took for a token but authentication did not would reach the API on the session alone, without the
session's second factor. The scheme is case-insensitive (RFC 9110, section 11.1), so `bearer`, `BEARER` and
`Bearer` are all a token; whatever follows is the token's business, and a malformed one is refused with 401,
never passed on to the session.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "Bearer"


@dataclass(frozen=True)
class BearerHeader:
    token: str | None  # None: the scheme is Bearer but the header is not `Bearer <one token>`


def parse(header: str) -> BearerHeader | None:
    """The Bearer credential of an Authorization header value, or None when the header is not Bearer."""
    parts = header.split()
    if not parts or parts[0].lower() != SCHEME.lower():
        return None
    return BearerHeader(token=parts[1] if len(parts) == 2 else None)
