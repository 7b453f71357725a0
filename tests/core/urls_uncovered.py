"""A URL configuration with one extra, unregistered tenant route: the isolation harness must report it."""

from typing import Any

from django.urls import include, path

from apps.tenants.api.base import TenantAPIView
from config.urls import handler404, handler500
from config.urls import urlpatterns as project_urlpatterns


class WidgetView(TenantAPIView):
    permission_map: dict = {}

    def get(self, request: Any, tenant_slug: str, widget_id: str) -> Any:  # pragma: no cover
        raise AssertionError("never called")


widget_patterns = (
    [path("tenants/<slug:tenant_slug>/widgets/<uuid:widget_id>", WidgetView.as_view(), name="widget-detail")],
    "api-test",
)

urlpatterns = [path("api/v1/", include(widget_patterns)), *project_urlpatterns]

__all__ = ["handler404", "handler500", "urlpatterns"]
