from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.acting import acting_user
from apps.audit.admin_mixins import AuditedModelAdmin
from apps.core.errors import DomainError
from apps.quotas import services
from apps.quotas.models import GpuQuota, QuotaRequest, QuotaRequestStatus, TenantQuota


class GpuQuotaInline(admin.TabularInline):
    model = GpuQuota
    fk_name = "tenant"
    extra = 0


@admin.register(TenantQuota)
class TenantQuotaAdmin(AuditedModelAdmin):
    list_display = [
        "tenant",
        "max_gpus",
        "max_instances",
        "max_vcpu",
        "max_memory_gib",
        "max_volume_gib",
        "max_object_storage_gib",
        "updated_at",
    ]
    search_fields = ["tenant__slug"]
    raw_id_fields = ["tenant"]


@admin.register(GpuQuota)
class GpuQuotaAdmin(AuditedModelAdmin):
    list_display = ["tenant", "gpu_type", "region", "max_gpus"]
    search_fields = ["tenant__slug"]
    raw_id_fields = ["tenant"]


def _decide(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[QuotaRequest],
    approve: bool,
) -> None:
    done = 0
    for quota_request in queryset.filter(status=QuotaRequestStatus.PENDING):
        try:
            services.quota_request_decide(actor=acting_user(request), request=quota_request, approve=approve)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
    modeladmin.message_user(
        request, f"{'Approved' if approve else 'Denied'} {done} request(s).", messages.SUCCESS
    )


@admin.action(description="Approve selected requests (sets the new limits)")
def approve(modeladmin: Any, request: HttpRequest, queryset: QuerySet[QuotaRequest]) -> None:
    _decide(modeladmin, request, queryset, approve=True)


@admin.action(description="Deny selected requests")
def deny(modeladmin: Any, request: HttpRequest, queryset: QuerySet[QuotaRequest]) -> None:
    _decide(modeladmin, request, queryset, approve=False)


@admin.register(QuotaRequest)
class QuotaRequestAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "tenant",
        "resource",
        "gpu_type",
        "region",
        "amount",
        "status",
        "requested_by",
    ]
    list_filter = ["status", "resource"]
    search_fields = ["tenant__slug", "requested_by__email"]
    readonly_fields = [f.name for f in QuotaRequest._meta.fields]
    actions = [approve, deny]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
