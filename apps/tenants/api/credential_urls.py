from django.urls import path

from apps.tenants.api import credentials as views

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("tenants/<slug:tenant_slug>/tokens", views.TokenListView.as_view(), name="token-list"),
    path(
        "tenants/<slug:tenant_slug>/tokens/<uuid:token_id>",
        views.TokenDetailView.as_view(),
        name="token-detail",
    ),
    path("tenants/<slug:tenant_slug>/ssh-keys", views.SshKeyListView.as_view(), name="ssh-key-list"),
    path(
        "tenants/<slug:tenant_slug>/ssh-keys/<uuid:ssh_key_id>",
        views.SshKeyDetailView.as_view(),
        name="ssh-key-detail",
    ),
]
