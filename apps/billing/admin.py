"""Staff tools for the wallet: credit grants (created through the service, audited, never edited or
deleted) and the prepaid/postpaid switch with its credit limit (audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from apps.accounts.acting import acting_user
from apps.audit.admin_mixins import AuditedModelAdmin
from apps.billing import services
from apps.billing.models import BillingAccount, BillingMode, CreditGrant, CreditReversal
from apps.catalog.models import InstanceType
from apps.core.errors import DomainError


@admin.register(CreditGrant)
class CreditGrantAdmin(admin.ModelAdmin):
    list_display = ["tenant", "kind", "amount", "expires_at", "reason", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["tenant__slug", "external_id", "reason"]
    raw_id_fields = ["tenant"]
    fields = ["tenant", "kind", "amount", "expires_at", "reason"]

    def get_readonly_fields(self, request: HttpRequest, obj: CreditGrant | None = None) -> Any:
        # A grant is money given: once saved it is never edited (a mistake is corrected by a new grant).
        return self.fields if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CreditGrant, form: ModelForm, change: bool) -> None:
        if change:
            return
        grant = services.credit_grant_create(
            tenant=obj.tenant,
            kind=obj.kind,
            amount=obj.amount,
            reason=obj.reason,
            expires_at=obj.expires_at,
            actor=acting_user(request),
        )
        obj.pk, obj.created_by, obj.created_at = grant.pk, grant.created_by, grant.created_at
        obj._state.adding = False


@admin.register(CreditReversal)
class CreditReversalAdmin(admin.ModelAdmin):
    """Read only: reversals are written by the Stripe webhook (refunds, disputes) and are append-only."""

    list_display = ["tenant", "cause", "source_id", "sequence", "amount", "grant", "created_at"]
    list_filter = ["cause"]
    search_fields = ["tenant__slug", "source_id", "stripe_event_id"]
    raw_id_fields = ["tenant", "grant"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _switch(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BillingAccount], mode: str
) -> None:
    done = 0
    for account in queryset.select_related("tenant"):
        try:
            services.billing_mode_set(actor=acting_user(request), tenant=account.tenant, mode=mode)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
    modeladmin.message_user(request, f"Switched {done} account(s) to {mode}.", messages.SUCCESS)


@admin.action(description="Switch to postpaid (invoice in arrears, up to the credit limit)")
def make_postpaid(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BillingAccount]
) -> None:
    _switch(modeladmin, request, queryset, BillingMode.POSTPAID)


@admin.action(description="Switch to prepaid (credits)")
def make_prepaid(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BillingAccount]
) -> None:
    _switch(modeladmin, request, queryset, BillingMode.PREPAID)


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["tenant", "mode", "credit_limit", "monthly_budget", "budget_hard", "updated_at"]
    list_filter = ["mode"]
    search_fields = ["tenant__slug"]
    raw_id_fields = ["tenant"]
    fields = ["tenant", "mode", "credit_limit", "monthly_budget", "budget_hard"]
    readonly_fields = ["monthly_budget", "budget_hard"]  # the tenant's own setting, through the API
    actions = [make_postpaid, make_prepaid]

    def get_readonly_fields(self, request: HttpRequest, obj: BillingAccount | None = None) -> Any:
        return [*self.readonly_fields, "tenant"] if obj is not None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: BillingAccount, form: ModelForm, change: bool) -> None:
        account = services.billing_mode_set(
            actor=acting_user(request), tenant=obj.tenant, mode=obj.mode, credit_limit=obj.credit_limit
        )
        obj.pk = account.pk
        obj._state.adding = False


@admin.register(InstanceType)
class InstanceTypeAdmin(AuditedModelAdmin):
    """The catalog's instance types, registered by billing: a price change is a price version (billing's),
    recorded through its service."""

    list_display = [
        "slug",
        "name",
        "gpu_type",
        "gpu_count",
        "vcpu",
        "memory_gib",
        "price_per_hour",
        "whole_node",
        "active",
    ]
    list_filter = ["active", "gpu_type"]
    list_editable = ["price_per_hour", "active"]

    def save_model(self, request: HttpRequest, obj: InstanceType, form: Any, change: bool) -> None:
        # A price change is a new price version from now on (billing rates usage at the version in force).
        new_price = obj.price_per_hour
        if change and "price_per_hour" in form.changed_data:
            obj.price_per_hour = InstanceType.objects.get(pk=obj.pk).price_per_hour
            super().save_model(request, obj, form, change)
            services.price_change(actor=request.user, instance_type=obj, price_per_hour=new_price)
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)
