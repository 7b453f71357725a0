from django.urls import path

from apps.tenants.api import audit, views

T = "tenants/<slug:tenant_slug>"

urlpatterns = [
    path("tenants", views.TenantListView.as_view(), name="tenant-list"),
    path(f"{T}", views.TenantDetailView.as_view(), name="tenant-detail"),
    path(f"{T}/members", views.MemberListView.as_view(), name="member-list"),
    path(f"{T}/members/<uuid:member_id>", views.MemberDetailView.as_view(), name="member-detail"),
    path(f"{T}/invitations", views.InvitationListView.as_view(), name="invitation-list"),
    path(
        f"{T}/invitations/<uuid:invitation_id>",
        views.InvitationDetailView.as_view(),
        name="invitation-detail",
    ),
    path(f"{T}/audit-events", audit.AuditEventListView.as_view(), name="audit-event-list"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
]
