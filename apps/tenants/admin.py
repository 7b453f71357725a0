from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.acting import acting_user
from apps.audit.admin_mixins import AuditedModelAdmin
from apps.core.errors import DomainError
from apps.tenants import services
from apps.tenants.models import Invitation, Membership, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["user", "role", "created_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


def _apply(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Tenant],
    fn: Any,
    verb: str,
    **kwargs: Any,
) -> None:
    done = 0
    for tenant in queryset:
        try:
            fn(actor=acting_user(request), tenant=tenant, **kwargs)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{tenant.slug}: {exc.message}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{verb} {done} tenant(s).", messages.SUCCESS)


def _with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Tenant],
    fn: Any,
    verb: str,
    title: str,
) -> HttpResponse | None:
    if "apply" in request.POST:
        form = ReasonForm(request.POST)
        if form.is_valid():
            _apply(modeladmin, request, queryset, fn, verb, reason=form.cleaned_data["reason"])
            return None
    else:
        form = ReasonForm()
    return render(
        request,
        "admin/tenants/reason.html",
        {
            "title": title,
            "form": form,
            "tenants": queryset,
            "action": request.POST.get("action"),
            "opts": modeladmin.model._meta,
        },
    )


@admin.action(description="Suspend selected tenants (asks for a reason)")
def suspend(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Tenant]
) -> HttpResponse | None:
    return _with_reason(
        modeladmin, request, queryset, services.tenant_suspend, "Suspended", "Suspend tenants"
    )


@admin.action(description="Reactivate selected tenants")
def reactivate(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
    _apply(modeladmin, request, queryset, services.tenant_reactivate, "Reactivated")


@admin.action(description="Close selected tenants (irreversible; asks for a reason)")
def close(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Tenant]
) -> HttpResponse | None:
    return _with_reason(modeladmin, request, queryset, services.tenant_close, "Closed", "Close tenants")


@admin.register(Tenant)
class TenantAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "slug", "status", "status_reason", "created_at", "created_by"]
    fields = ["id", "name", "slug", "status", "status_reason", "created_at", "created_by"]
    inlines = [MembershipInline]
    actions = [suspend, reactivate, close]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tenants are created by their owners, so there is always an owner

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # close instead: billing and audit history must survive


@admin.action(description="Revoke selected invitations")
def revoke_invitations(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Invitation]
) -> None:
    done = 0
    for invitation in queryset.order_by("pk"):
        try:
            services.invitation_revoke(actor=acting_user(request), invitation=invitation)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{invitation.email}: {exc.message}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"Revoked {done} invitation(s).", messages.SUCCESS)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "tenant", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    search_fields = ["email", "tenant__slug"]
    readonly_fields = [f.name for f in Invitation._meta.fields if f.name != "secret_hash"]
    exclude = ["secret_hash"]
    actions = [revoke_invitations]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoke instead (the action above): audited like the console's and the API's, and the row stays
        # for the audit log and for the accepted_by of accepted ones.
        return False
