from django.urls import path

from apps.catalog.api import views

urlpatterns = [
    path("regions", views.RegionListView.as_view(), name="region-list"),
    path("gpu-types", views.GpuTypeListView.as_view(), name="gpu-type-list"),
    path("instance-types", views.InstanceTypeListView.as_view(), name="instance-type-list"),
    path("images", views.ImageListView.as_view(), name="image-list"),
]
