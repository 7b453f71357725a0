"""The client's address (apps.core.middleware.client_ip), which log-in rate limits, the anonymous API throttle
and audit rows use: REMOTE_ADDR unless TRUSTED_PROXY_HOPS says how many proxies append to X-Forwarded-For."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from apps.core.middleware import client_ip

PROXY = "10.0.0.2"


def _ip(forwarded_for: str | None, remote_addr: str = PROXY) -> str | None:
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client_ip(RequestFactory().get("/", **extra))


def test_without_trusted_proxies_the_header_is_ignored(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 0
    assert _ip("203.0.113.7") == PROXY
    assert _ip(None) == PROXY


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "expected"),
    [
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the left entry is the client's own claim
        (1, " 2001:db8::1 ", "2001:db8::1"),
        (2, "198.51.100.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        (2, "203.0.113.7,10.0.0.9", "203.0.113.7"),
    ],
)
def test_the_entry_counted_from_the_right(
    settings: Any, hops: int, forwarded_for: str, expected: str
) -> None:
    settings.TRUSTED_PROXY_HOPS = hops
    assert _ip(forwarded_for) == expected


@pytest.mark.parametrize(
    ("hops", "forwarded_for"),
    [
        (1, None),  # reached web without the proxy
        (1, ""),
        (2, "203.0.113.7"),  # fewer entries than proxies
        (1, "not-an-address"),  # never stored as an address
        (1, "203.0.113.7, "),
    ],
)
def test_falls_back_to_remote_addr(settings: Any, hops: int, forwarded_for: str | None) -> None:
    settings.TRUSTED_PROXY_HOPS = hops
    assert _ip(forwarded_for) == PROXY
