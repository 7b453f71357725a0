"""Every 429 carries Retry-After, equal to the seconds in its message, even after the rate was lowered."""

import re

from apps.core.throttling import PrincipalRateThrottle


def test_retry_after_present_after_rate_lowered(owner, monkeypatch):
    # The owner's token is new, so its throttle history starts empty (no cache.clear(): Redis is shared).
    client = owner.token_client()
    monkeypatch.setattr(PrincipalRateThrottle, "THROTTLE_RATES", {"principal": "10/min"})
    for _ in range(6):
        assert client.get("/api/v1/me").status_code == 200
    # The operator lowers the rate while six requests are still in the window.
    monkeypatch.setattr(PrincipalRateThrottle, "THROTTLE_RATES", {"principal": "3/min"})
    response = client.get("/api/v1/me")
    assert response.status_code == 429
    seconds = int(response["Retry-After"])
    assert 1 <= seconds <= 60
    assert re.search(rf"Retry in {seconds} seconds", response.json()["error"]["message"])
