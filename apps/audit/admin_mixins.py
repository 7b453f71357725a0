from typing import Any

from django.contrib import admin
from django.db import transaction
from django.forms import ModelForm
from django.http import HttpRequest

from apps.audit.services import audit_record


def _tenant_of(obj: Any) -> Any:
    if obj._meta.label_lower == "tenants.tenant":
        return obj
    return getattr(obj, "tenant", None)


class AuditedModelAdmin(admin.ModelAdmin):
    """Staff edits in the admin are audited like every other write."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            changed = {
                name: str(form.cleaned_data.get(name)) for name in form.changed_data if "password" not in name
            }
            action = f"admin.{obj._meta.model_name}.{'change' if change else 'create'}"
            audit_record(
                actor=request.user, action=action, target=obj, tenant=_tenant_of(obj), changes=changed
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            audit_record(
                actor=request.user,  # the admin is behind staff log-in
                action=f"admin.{obj._meta.model_name}.delete",
                target=obj,
                tenant=_tenant_of(obj),
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)
