"""The web server as `make run` starts it (scripts/web.sh: gunicorn with config/gunicorn.py, static files
collected and served by whitenoise, the dev settings), on the test database."""

from __future__ import annotations

import requests

from tests.support.processes import PYTHON, Processes, free_port, wait_for


def serve(processes: Processes, name: str = "web", **env: str) -> str:
    """Starts scripts/web.sh on a free port with the dev settings (`env` adds or overrides variables: WEB_*,
    DEBUG, DATABASE_POOL_*); returns its base URL once /healthz answers."""
    port = free_port()
    defaults = {
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "PYTHON": PYTHON,
        "WEB_BIND": f"127.0.0.1:{port}",
        "STATIC_ROOT": str(processes.directory / "static"),  # never the checkout's var/staticfiles
        "DEBUG": "",
    }
    processes.start(name, ["bash", "scripts/web.sh"], **{**defaults, **env})
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, what=f"scripts/web.sh at {url}", processes=processes)
    return url
