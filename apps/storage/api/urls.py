from django.urls import path

from apps.storage.api import views

V = "tenants/<slug:tenant_slug>/volumes"

urlpatterns = [
    path(V, views.VolumeListView.as_view(), name="volume-list"),
    path(f"{V}/<uuid:volume_id>", views.VolumeDetailView.as_view(), name="volume-detail"),
]
