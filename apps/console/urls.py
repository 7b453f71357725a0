from django.urls import path

from apps.console import views
from apps.console.views import account, instances, ssh_keys, tenant

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("tenants/new/", views.tenant_new, name="tenant_new"),
    path("invitations/accept/", views.invitation_accept, name="invitation_accept"),
    # Tenant pages: dashboard, instances, launch, SSH keys (apps/console/views/{tenant,instances,ssh_keys}.py)
    path("t/<slug:tenant_slug>/", tenant.dashboard, name="dashboard"),
    path("t/<slug:tenant_slug>/instances/", instances.instance_list, name="instances"),
    path("t/<slug:tenant_slug>/instances/table/", instances.instance_table, name="instances_table"),
    path("t/<slug:tenant_slug>/launch/", instances.launch, name="launch"),
    path("t/<slug:tenant_slug>/launch/options/", instances.launch_options, name="launch_options"),
    path(
        "t/<slug:tenant_slug>/instances/<uuid:instance_id>/",
        instances.instance_detail,
        name="instance_detail",
    ),
    path(
        "t/<slug:tenant_slug>/instances/<uuid:instance_id>/status/",
        instances.instance_status,
        name="instance_status",
    ),
    path(
        "t/<slug:tenant_slug>/instances/<uuid:instance_id>/logs/",
        instances.instance_logs,
        name="instance_logs",
    ),
    path(
        "t/<slug:tenant_slug>/instances/<uuid:instance_id>/<slug:action>/",
        instances.instance_action,
        name="instance_action",
    ),
    path("t/<slug:tenant_slug>/ssh-keys/", ssh_keys.ssh_keys, name="ssh_keys"),
    path(
        "t/<slug:tenant_slug>/ssh-keys/<uuid:ssh_key_id>/delete/",
        ssh_keys.ssh_key_delete,
        name="ssh_key_delete",
    ),
    # Tenant account pages (apps/console/views/account.py)
    path("t/<slug:tenant_slug>/tokens/", account.tokens, name="tokens"),
    path("t/<slug:tenant_slug>/tokens/<uuid:token_id>/revoke/", account.token_revoke, name="token_revoke"),
    path("t/<slug:tenant_slug>/members/", account.members, name="members"),
    path("t/<slug:tenant_slug>/members/<uuid:member_id>/role/", account.member_role, name="member_role"),
    path(
        "t/<slug:tenant_slug>/members/<uuid:member_id>/remove/", account.member_remove, name="member_remove"
    ),
    path("t/<slug:tenant_slug>/invitations/", account.invite, name="invite"),
    path(
        "t/<slug:tenant_slug>/invitations/<uuid:invitation_id>/revoke/",
        account.invitation_revoke,
        name="invitation_revoke",
    ),
    path("t/<slug:tenant_slug>/quotas/", account.quotas, name="quotas"),
    path("t/<slug:tenant_slug>/billing/", account.billing, name="billing"),
    path("t/<slug:tenant_slug>/billing/topup/", account.billing_topup, name="billing_topup"),
    path("t/<slug:tenant_slug>/billing/card/", account.billing_card, name="billing_card"),
    path("t/<slug:tenant_slug>/billing/budget/", account.billing_budget, name="billing_budget"),
    path("t/<slug:tenant_slug>/audit/", account.audit, name="audit"),
]
