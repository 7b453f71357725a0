from django.urls import path

from apps.console import views
from apps.console.views import (
    clusters,
    instances,
    ssh_keys,
    staff,
    staff_capacity,
    staff_tenants,
    storage_buckets,
    storage_volumes,
    tags,
    tenant,
)
from apps.console.views.account import audit, billing, members, quotas, tag_budgets, tokens, usage

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("build-status/", views.build_status, name="build_status"),
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
    # Before the actions' pattern, which would take "tags" for an action (apps/console/views/tags.py).
    path("t/<slug:tenant_slug>/instances/<uuid:instance_id>/tags/", tags.instance_tags, name="instance_tags"),
    path(
        "t/<slug:tenant_slug>/instances/<uuid:instance_id>/<slug:action>/",
        instances.instance_action,
        name="instance_action",
    ),
    # Clusters: N whole nodes placed together (apps/console/views/clusters.py)
    path("t/<slug:tenant_slug>/clusters/", clusters.cluster_list, name="clusters"),
    path("t/<slug:tenant_slug>/clusters/table/", clusters.cluster_table, name="clusters_table"),
    path("t/<slug:tenant_slug>/clusters/new/", clusters.cluster_create, name="cluster_create"),
    path(
        "t/<slug:tenant_slug>/clusters/new/options/",
        clusters.cluster_create_options,
        name="cluster_create_options",
    ),
    path("t/<slug:tenant_slug>/clusters/new/estimate/", clusters.cluster_estimate, name="cluster_estimate"),
    path("t/<slug:tenant_slug>/clusters/<uuid:cluster_id>/", clusters.cluster_detail, name="cluster_detail"),
    path(
        "t/<slug:tenant_slug>/clusters/<uuid:cluster_id>/status/",
        clusters.cluster_status,
        name="cluster_status",
    ),
    path("t/<slug:tenant_slug>/clusters/<uuid:cluster_id>/tags/", tags.cluster_tags, name="cluster_tags"),
    path(
        "t/<slug:tenant_slug>/clusters/<uuid:cluster_id>/<slug:action>/",
        clusters.cluster_action,
        name="cluster_action",
    ),
    path("t/<slug:tenant_slug>/ssh-keys/", ssh_keys.ssh_keys, name="ssh_keys"),
    path(
        "t/<slug:tenant_slug>/ssh-keys/<uuid:ssh_key_id>/delete/",
        ssh_keys.ssh_key_delete,
        name="ssh_key_delete",
    ),
    # Storage: volumes and object storage (apps/console/views/storage_{volumes,buckets}.py)
    path("t/<slug:tenant_slug>/volumes/", storage_volumes.volumes, name="volumes"),
    path("t/<slug:tenant_slug>/volumes/table/", storage_volumes.volumes_table, name="volumes_table"),
    path(
        "t/<slug:tenant_slug>/volumes/<uuid:volume_id>/", storage_volumes.volume_detail, name="volume_detail"
    ),
    path(
        "t/<slug:tenant_slug>/volumes/<uuid:volume_id>/status/",
        storage_volumes.volume_status,
        name="volume_status",
    ),
    path(
        "t/<slug:tenant_slug>/volumes/<uuid:volume_id>/resize/",
        storage_volumes.volume_resize,
        name="volume_resize",
    ),
    path(
        "t/<slug:tenant_slug>/volumes/<uuid:volume_id>/rename/",
        storage_volumes.volume_rename,
        name="volume_rename",
    ),
    path(
        "t/<slug:tenant_slug>/volumes/<uuid:volume_id>/delete/",
        storage_volumes.volume_delete,
        name="volume_delete",
    ),
    path("t/<slug:tenant_slug>/volumes/<uuid:volume_id>/tags/", tags.volume_tags, name="volume_tags"),
    path("t/<slug:tenant_slug>/object-storage/", storage_buckets.buckets, name="buckets"),
    path(
        "t/<slug:tenant_slug>/object-storage/buckets/<slug:bucket_name>/",
        storage_buckets.bucket_detail,
        name="bucket_detail",
    ),
    path(
        "t/<slug:tenant_slug>/object-storage/buckets/<slug:bucket_name>/delete/",
        storage_buckets.bucket_delete,
        name="bucket_delete",
    ),
    path(
        "t/<slug:tenant_slug>/object-storage/buckets/<slug:bucket_name>/tags/",
        tags.bucket_tags,
        name="bucket_tags",
    ),
    path("t/<slug:tenant_slug>/object-storage/access-keys/", storage_buckets.access_keys, name="access_keys"),
    path(
        "t/<slug:tenant_slug>/object-storage/access-keys/<uuid:access_key_id>/revoke/",
        storage_buckets.access_key_revoke,
        name="access_key_revoke",
    ),
    # Tenant account pages (apps/console/views/account/)
    path("t/<slug:tenant_slug>/tokens/", tokens.tokens, name="tokens"),
    path(
        "t/<slug:tenant_slug>/tokens/<uuid:token_id>/revoke/",
        tokens.token_revoke,
        name="token_revoke",
    ),
    path("t/<slug:tenant_slug>/members/", members.members, name="members"),
    path("t/<slug:tenant_slug>/members/<uuid:member_id>/role/", members.member_role, name="member_role"),
    path(
        "t/<slug:tenant_slug>/members/<uuid:member_id>/remove/",
        members.member_remove,
        name="member_remove",
    ),
    path("t/<slug:tenant_slug>/invitations/", members.invite, name="invite"),
    path(
        "t/<slug:tenant_slug>/invitations/<uuid:invitation_id>/revoke/",
        members.invitation_revoke,
        name="invitation_revoke",
    ),
    path("t/<slug:tenant_slug>/quotas/", quotas.quotas, name="quotas"),
    path("t/<slug:tenant_slug>/billing/", billing.billing, name="billing"),
    path("t/<slug:tenant_slug>/billing/topup/", billing.billing_topup, name="billing_topup"),
    path("t/<slug:tenant_slug>/billing/card/", billing.billing_card, name="billing_card"),
    path("t/<slug:tenant_slug>/billing/budget/", billing.billing_budget, name="billing_budget"),
    # Usage by tag and tag budgets (apps/console/views/account/{usage,tag_budgets}.py)
    path("t/<slug:tenant_slug>/billing/usage/", usage.usage, name="usage"),
    path("t/<slug:tenant_slug>/billing/tag-budgets/", tag_budgets.tag_budgets, name="tag_budgets"),
    path(
        "t/<slug:tenant_slug>/billing/tag-budgets/<uuid:tag_budget_id>/",
        tag_budgets.tag_budget_update,
        name="tag_budget_update",
    ),
    path(
        "t/<slug:tenant_slug>/billing/tag-budgets/<uuid:tag_budget_id>/delete/",
        tag_budgets.tag_budget_delete,
        name="tag_budget_delete",
    ),
    path(
        "t/<slug:tenant_slug>/billing/usage/export/",
        billing.billing_usage_export,
        name="billing_usage_export",
    ),
    path("t/<slug:tenant_slug>/audit/", audit.audit, name="audit"),
    # Staff pages (apps/console/views/staff_*.py): anyone but staff gets 404
    path("staff/capacity/", staff_capacity.staff_capacity, name="staff_capacity"),
    path("staff/", staff_tenants.tenants, name="staff_tenants"),
    path("staff/tenants/<slug:staff_tenant_slug>/", staff_tenants.tenant_detail, name="staff_tenant"),
    *[
        path(
            f"staff/tenants/<slug:staff_tenant_slug>/{action}/",
            staff_tenants.tenant_status,
            {"action": action},
            name=f"staff_tenant_{action}",
        )
        for action in ("suspend", "reactivate", "close")
    ],
    path(
        "staff/tenants/<slug:staff_tenant_slug>/credit/",
        staff_tenants.tenant_credit,
        name="staff_tenant_credit",
    ),
    path(
        "staff/tenants/<slug:staff_tenant_slug>/quota/",
        staff_tenants.tenant_quota,
        name="staff_tenant_quota",
    ),
    path("staff/quota-requests/", staff.quota_requests, name="staff_quota_requests"),
    path(
        "staff/quota-requests/<uuid:quota_request_id>/decide/",
        staff.quota_request_decide,
        name="staff_quota_request_decide",
    ),
    path("staff/instances/", staff.instances, name="staff_instances"),
]
