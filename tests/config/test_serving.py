"""`make run` serves what production serves: scripts/web.sh starts gunicorn (threads, config/gunicorn.py),
static files are collected and served by whitenoise under hashed names, compressed and cached for good,
and DEBUG is off; DEBUG=1 is the development switch (Django's debug pages, static files from their
sources). Real servers on the test database, started exactly as scripts/run.sh starts web."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.support.processes import Processes
from tests.support.web import serve

pytestmark = pytest.mark.django_db(transaction=True)

HASHED_CSS = re.compile(r"/static/css/console\.[0-9a-f]{12}\.css")
DEBUG_404_MARKER = "Using the URLconf defined in"  # Django's technical 404 page


def test_make_run_serves_with_gunicorn_whitenoise_and_debug_off(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    try:
        url = serve(processes, WEB_WORKERS="1", WEB_THREADS="2")
        login = requests.get(f"{url}/accounts/login/", timeout=30)
        assert login.status_code == 200
        assert login.headers["Server"].startswith("gunicorn")
        css = HASHED_CSS.search(login.text)
        assert css, "the page names its stylesheet by its hash (the manifest storage of production)"

        static = requests.get(f"{url}{css.group(0)}", headers={"Accept-Encoding": "gzip"}, timeout=30)
        assert static.status_code == 200
        assert static.headers["Content-Encoding"] == "gzip"
        assert "immutable" in static.headers["Cache-Control"]
        assert b"--accent" in static.content

        missing = requests.get(f"{url}/no-such-page/", timeout=30)
        assert missing.status_code == 404
        assert DEBUG_404_MARKER not in missing.text  # DEBUG is off
        api_missing = requests.get(f"{url}/api/v1/no-such-endpoint", timeout=30)
        assert api_missing.status_code == 404
        assert api_missing.json()["error"]["code"] == "not_found"
    finally:
        processes.stop_all()


def test_debug_1_turns_on_debug_pages_and_serves_static_sources(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    try:
        url = serve(processes, WEB_WORKERS="1", WEB_THREADS="2", DEBUG="1")
        missing = requests.get(f"{url}/no-such-page/", timeout=30)
        assert missing.status_code == 404
        assert DEBUG_404_MARKER in missing.text
        login = requests.get(f"{url}/accounts/login/", timeout=30)
        assert "/static/css/console.css" in login.text  # the source's name: nothing collected
        assert requests.get(f"{url}/static/css/console.css", timeout=30).status_code == 200
        assert not (tmp_path / "static").exists()
    finally:
        processes.stop_all()
