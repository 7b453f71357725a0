from django.urls import path

from apps.audit.api import views

urlpatterns = [
    path(
        "tenants/<slug:tenant_slug>/audit-events", views.AuditEventListView.as_view(), name="audit-event-list"
    ),
]
