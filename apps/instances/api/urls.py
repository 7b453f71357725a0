from django.urls import path

from apps.instances.api import clusters, logs, views

I = "tenants/<slug:tenant_slug>/instances"  # noqa: E741

urlpatterns = [
    path(I, views.InstanceListView.as_view(), name="instance-list"),
    path(f"{I}/<uuid:instance_id>", views.InstanceDetailView.as_view(), name="instance-detail"),
    path(f"{I}/<uuid:instance_id>/stop", views.InstanceStopView.as_view(), name="instance-stop"),
    path(f"{I}/<uuid:instance_id>/start", views.InstanceStartView.as_view(), name="instance-start"),
    path(f"{I}/<uuid:instance_id>/restart", views.InstanceRestartView.as_view(), name="instance-restart"),
    path(f"{I}/<uuid:instance_id>/events", views.InstanceEventListView.as_view(), name="instance-event-list"),
    path(f"{I}/<uuid:instance_id>/logs", logs.InstanceLogView.as_view(), name="instance-logs"),
]

C = "tenants/<slug:tenant_slug>/clusters"
urlpatterns += [
    path(C, clusters.ClusterListView.as_view(), name="cluster-list"),
    path(f"{C}/<uuid:cluster_id>", clusters.ClusterDetailView.as_view(), name="cluster-detail"),
    path(f"{C}/<uuid:cluster_id>/stop", clusters.ClusterStopView.as_view(), name="cluster-stop"),
    path(f"{C}/<uuid:cluster_id>/start", clusters.ClusterStartView.as_view(), name="cluster-start"),
    path(
        f"{C}/<uuid:cluster_id>/terminate", clusters.ClusterTerminateView.as_view(), name="cluster-terminate"
    ),
    path(f"{C}/<uuid:cluster_id>/events", clusters.ClusterEventListView.as_view(), name="cluster-event-list"),
]
