"""The vendored htmx is the file VENDORED.md records (no CDN); the layout loads it from static files; views
read htmx's request headers through django-htmx (`request.htmx`), not by hand."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders

JS = Path(settings.BASE_DIR) / "static" / "js"


def test_vendored_htmx_matches_its_record() -> None:
    record = (JS / "VENDORED.md").read_text()
    match = re.search(r"sha256 of htmx.min.js: `([0-9a-f]{64})`", record)
    assert match, record
    assert hashlib.sha256((JS / "htmx.min.js").read_bytes()).hexdigest() == match.group(1)
    assert "| htmx.min.js | htmx.org (npm) | 2.0.11 |" in record


def test_the_layout_uses_local_scripts_only() -> None:
    base = (Path(settings.BASE_DIR) / "templates" / "base.html").read_text()
    assert "{% static 'js/htmx.min.js' %}" in base and "{% static 'js/console.js' %}" in base
    assert "://" not in re.sub(r"<a [^>]*>", "", base.split("<body")[0])  # nothing loaded from elsewhere
    assert finders.find("js/htmx.min.js") and finders.find("js/console.js")


def test_views_read_htmx_headers_through_django_htmx() -> None:
    assert "django_htmx" in settings.INSTALLED_APPS
    assert "django_htmx.middleware.HtmxMiddleware" in settings.MIDDLEWARE
    by_hand = [
        str(path.relative_to(settings.BASE_DIR))
        for path in (Path(settings.BASE_DIR) / "apps").rglob("*.py")
        if re.search(r"hx-request|http_hx_", path.read_text(), re.IGNORECASE)
    ]
    assert by_hand == [], "use request.htmx (django-htmx) instead of reading HX-* headers"
