"""Every route of the REST API. tests/core/test_isolation.py walks this list."""

from django.urls import include, path

from apps.billing.api import urls as billing_urls
from apps.billing.invoices.api import urls as invoices_urls
from apps.billing.stripe.api import urls as stripe_urls
from apps.catalog.api import urls as catalog_urls
from apps.core.schema_views import RedocView, SchemaView, SwaggerView
from apps.instances.api import urls as instances_urls
from apps.quotas.api import urls as quotas_urls
from apps.storage.api import urls as storage_urls
from apps.storage.objects.api import urls as object_storage_urls
from apps.tenants.api import credential_urls
from apps.tenants.api import urls as tenants_urls

app_name = "api"

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", SwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", RedocView.as_view(url_name="api:schema"), name="redoc"),
    path("", include(credential_urls)),  # /me, tokens and SSH keys
    path("", include(tenants_urls)),
    path("", include(catalog_urls)),
    path("", include(quotas_urls)),
    path("", include(instances_urls)),
    path("", include(storage_urls)),
    path("", include(object_storage_urls)),
    path("", include(billing_urls)),
    path("", include(invoices_urls)),
    path("", include(stripe_urls)),
]
