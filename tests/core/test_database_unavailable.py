"""A database that is briefly gone answers 503 with Retry-After in the API's error format, not a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from apps.catalog.api.views import RegionListView
from tests.conftest import Actor


@pytest.mark.django_db
def test_a_lost_database_connection_is_a_503_the_client_may_retry(
    owner: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(self: Any) -> Any:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(RegionListView, "get_queryset", lost)
    client: APIClient = owner.token_client()

    response = client.get("/api/v1/regions")

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "administrator" not in response.content.decode()  # the driver's message stays in the log


@pytest.mark.django_db
def test_other_errors_are_still_500(owner: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(RegionListView, "get_queryset", broken)
    client = owner.token_client()
    client.raise_request_exception = False

    assert client.get("/api/v1/regions").status_code == 500


@pytest.mark.django_db
def test_a_database_error_outside_the_api_views_is_a_503_page_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Middleware reads the session before any view: a pool with no connection to give (PoolTimeout, which
    Django raises as OperationalError) or a lost server there answers 503 with Retry-After, a page that
    needs nothing of the database, under /api/ the error envelope."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    def no_connection(self: Any) -> Any:
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(SessionStore, "load", no_connection)
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "abcdefgh12345678abcdefgh12345678"

    page = client.get("/")
    assert page.status_code == 503
    assert page["Retry-After"] == "2"
    assert page["Content-Type"].startswith("text/html")
    assert b"Briefly unavailable" in page.content
    assert b"connection after" not in page.content

    api = client.get("/api/v1/regions")  # the session is read before DRF's own handler could answer
    assert api.status_code == 503
    assert api["Retry-After"] == "2"
    assert api.json()["error"]["code"] == "database_unavailable"
