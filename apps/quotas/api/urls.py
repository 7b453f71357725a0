from django.urls import path

from apps.quotas.api import views

T = "tenants/<slug:tenant_slug>"

urlpatterns = [
    path(f"{T}/quotas", views.QuotaView.as_view(), name="quota"),
    path(f"{T}/quota-requests", views.QuotaRequestListView.as_view(), name="quota-request-list"),
    path(
        f"{T}/quota-requests/<uuid:quota_request_id>",
        views.QuotaRequestDetailView.as_view(),
        name="quota-request-detail",
    ),
]
