"""The schema and docs views: drf-spectacular's, with errors in the API's one JSON format.

Kept apart from apps/core/schema.py, which DRF imports while loading its settings (DEFAULT_SCHEMA_CLASS).
"""

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class _JsonErrors:
    """Errors in the API's one JSON format, whatever the view renders on success (YAML, HTML): a throttled
    or failing schema request must not answer in YAML or as a bare HTML page."""

    request: Any

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(_JsonErrors, SpectacularAPIView):
    pass


class SwaggerView(_JsonErrors, SpectacularSwaggerView):
    pass


class RedocView(_JsonErrors, SpectacularRedocView):
    template_name = "core/redoc.html"  # no web fonts from Google: the docs load nothing from other hosts
