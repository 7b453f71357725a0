from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts import services
from apps.accounts.acting import acting_user
from apps.accounts.models import ApiToken, SshKey, User
from apps.audit.admin_mixins import AuditedModelAdmin
from apps.core.errors import Conflict


@admin.register(User)
class UserAdmin(AuditedModelAdmin, BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "email_verified_at", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "email_verified_at")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.action(description="Revoke selected tokens")
def revoke(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
    count = 0
    for token in queryset.filter(revoked_at__isnull=True).order_by("created_at", "pk"):
        try:
            services.token_revoke(actor=acting_user(request), token=token)
        except Conflict:
            continue  # revoked a moment ago with a token it was made from, also selected
        count += 1
    modeladmin.message_user(
        request, f"Revoked {count} token(s) and the tokens made from them.", messages.SUCCESS
    )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "user",
        "tenant",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    search_fields = ["name", "prefix", "user__email", "tenant__slug"]
    list_select_related = ["user", "tenant"]
    exclude = ["secret_hash"]
    actions = [revoke]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoke instead (the action above): audited, revokes the tokens made from it, and keeps the row
        # the audit log points at.
        return False


@admin.register(SshKey)
class SshKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "user", "key_type", "bits", "fingerprint", "created_at"]
    search_fields = ["name", "fingerprint", "tenant__slug"]
    list_select_related = ["tenant", "user"]
    readonly_fields = [
        "tenant",
        "user",
        "name",
        "public_key",
        "key_type",
        "bits",
        "fingerprint",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # Deleting here goes through the same service as the console and the API, so it is audited.
    def delete_model(self, request: HttpRequest, obj: SshKey) -> None:
        services.ssh_key_delete(actor=acting_user(request), key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SshKey]) -> None:
        with transaction.atomic():
            for key in queryset.select_related("tenant").order_by("pk"):
                services.ssh_key_delete(actor=acting_user(request), key=key)
