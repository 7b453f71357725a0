from django.contrib import admin
from django.urls import include, path

from apps.core import health, metrics
from apps.core.errors import json_or_html_400, json_or_html_404, json_or_html_500

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("billing/", include("apps.billing.invoices.urls")),
    path("", include("apps.console.urls")),
]

handler400 = json_or_html_400
handler404 = json_or_html_404
handler500 = json_or_html_500
