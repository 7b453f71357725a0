"""Database connections are pooled and bounded per process (config/settings/database.py): a server never
opens more than DATABASE_POOL_MAX_SIZE connections however many requests it serves at once; a request
that finds every connection taken waits, and past DATABASE_POOL_TIMEOUT answers 503 with Retry-After (the
API's error envelope; a plain page for the console), never 500.

A real server started as `make run` starts it (scripts/web.sh), with a pool of 2 and 8 threads. The test
holds an ACCESS EXCLUSIVE lock on the token table, so the first two API requests to get a connection sit
on it inside PostgreSQL, holding both; everything else queues for the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.db import connection

from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.support.processes import Processes, subprocess_database_url, wait_for
from tests.support.web import serve

pytestmark = pytest.mark.django_db(transaction=True)

POOL = 2
APPLICATION = "gpucloud-pool-test"  # names the server's connections in pg_stat_activity


def _server_connections(admin: psycopg.Connection[Any], *, waiting: bool = False) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    row = admin.execute(query, [APPLICATION]).fetchone()
    return int(row[0]) if row else 0


def _admin() -> psycopg.Connection[Any]:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=db["NAME"],
        autocommit=True,
    )


def test_more_requests_than_pooled_connections_wait_or_get_503_never_500(
    tmp_path: Path, make_actor: Callable[..., Actor]
) -> None:
    owner = make_actor(Role.OWNER)
    processes = Processes(tmp_path)
    try:
        url = serve(
            processes,
            WEB_WORKERS="1",
            WEB_THREADS="8",
            DATABASE_POOL_MAX_SIZE=str(POOL),
            DATABASE_POOL_TIMEOUT="1",
            DATABASE_URL=f"{subprocess_database_url()}?application_name={APPLICATION}",
        )
        api = {"Authorization": f"Bearer {owner.token_plaintext}"}
        assert requests.get(f"{url}/api/v1/me", headers=api, timeout=30).status_code == 200

        with _admin() as admin, _admin() as locker:
            locker.autocommit = False
            locker.execute("LOCK TABLE accounts_apitoken IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(10) as pool:
                api_calls = [
                    pool.submit(requests.get, f"{url}/api/v1/me", headers=api, timeout=60) for _ in range(6)
                ]
                wait_for(
                    lambda: _server_connections(admin, waiting=True) == POOL,
                    what=f"{POOL} requests to wait on the lock",
                )
                # Now every connection is taken. A session cookie makes the console read django_session in
                # middleware, outside DRF.
                console_calls = [
                    pool.submit(
                        requests.get,
                        f"{url}/",
                        cookies={"sessionid": "abcdefgh12345678abcdefgh12345678"},
                        allow_redirects=False,
                        timeout=60,
                    )
                    for _ in range(2)
                ]
                # Eight requests in flight, two connections: the rest wait for the pool, then give up.
                assert _server_connections(admin) == POOL
                others: list[Future[requests.Response]] = [*api_calls, *console_calls]
                deadline = time.monotonic() + 60
                while sum(not f.done() for f in others) > POOL and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert _server_connections(admin) == POOL
                locker.commit()  # the two holding connections go on
                wait(others, timeout=60)
            api_responses = [f.result() for f in api_calls]
            console_responses = [f.result() for f in console_calls]
            assert _server_connections(admin) <= POOL
    finally:
        processes.stop_all()

    statuses = sorted(r.status_code for r in api_responses)
    assert statuses == [200] * POOL + [503] * (6 - POOL), statuses
    for response in api_responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "2"
            assert response.json()["error"]["code"] == "database_unavailable"
    for response in console_responses:
        assert response.status_code == 503, response.status_code
        assert response.headers["Retry-After"] == "2"
        assert response.headers["Content-Type"].startswith("text/html")
        assert "Briefly unavailable" in response.text
    assert "Internal Server Error" not in processes.logs()
