from django.urls import path

from apps.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("tenants/new/", views.tenant_new, name="tenant_new"),
    path("invitations/accept/", views.invitation_accept, name="invitation_accept"),
]
