"""/healthz says the process is alive; /readyz says the database and the broker are reachable."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from config.celery import app as celery_app


def test_healthz_is_200_without_credentials_or_database() -> None:
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_and_broker_answer() -> None:
    response = APIClient().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


@pytest.fixture
def unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"redis://127.0.0.1:{_closed_loopback_port()}/0"
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_WRITE_URL"):
        monkeypatch.delenv(name, raising=False)  # Celery prefers these to its configuration
    saved = {key: celery_app.conf.get(key) for key in ("broker_url", "broker_write_url")}
    celery_app.conf.broker_url = url
    celery_app.conf.broker_write_url = url
    try:
        yield url
    finally:
        for key, value in saved.items():
            celery_app.conf[key] = value


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(unreachable_broker: str) -> None:
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "failed"}}


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_probes_only_answer_get(method: str) -> None:
    for path in ("/healthz", "/readyz"):
        assert getattr(APIClient(), method)(path).status_code == 405
