from django.urls import path

from apps.storage.objects.api import views

T = "tenants/<slug:tenant_slug>"

urlpatterns = [
    path(f"{T}/buckets", views.BucketListView.as_view(), name="bucket-list"),
    path(f"{T}/buckets/<str:bucket_name>", views.BucketDetailView.as_view(), name="bucket-detail"),
    path(f"{T}/buckets/<str:bucket_name>/presign", views.BucketPresignView.as_view(), name="bucket-presign"),
    path(f"{T}/access-keys", views.AccessKeyListView.as_view(), name="storage-access-key-list"),
    path(
        f"{T}/access-keys/<uuid:access_key_id>",
        views.AccessKeyDetailView.as_view(),
        name="storage-access-key-detail",
    ),
]
