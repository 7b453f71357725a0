from django.urls import path

from apps.accounts.api import views

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("tenants/<slug:tenant_slug>/tokens", views.TokenListView.as_view(), name="token-list"),
    path(
        "tenants/<slug:tenant_slug>/tokens/<uuid:token_id>",
        views.TokenDetailView.as_view(),
        name="token-detail",
    ),
]
