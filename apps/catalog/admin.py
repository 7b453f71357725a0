from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from apps.audit.admin_mixins import AuditedModelAdmin
from apps.catalog.kubeconfig import KubeconfigError, check_kubeconfig
from apps.catalog.models import (
    GpuType,
    Image,
    ImagePolicy,
    InstanceType,
    Region,
    RegionCapacity,
    RegionNode,
)


class RegionForm(forms.ModelForm):
    kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "autocomplete": "off"}),
        help_text="Paste a kubeconfig to replace the stored one (encrypted at rest, never shown again). "
        "Leave empty to keep it.",
    )
    clear_kubeconfig = forms.BooleanField(required=False, help_text="Remove the stored kubeconfig.")

    class Meta:
        model = Region
        fields = [
            "slug",
            "name",
            "status",
            "position",
            "in_cluster",
            "kubeconfig_context",
            "sandbox",
            "storage_class",
            "storage_access_mode",
            "storage_expandable",
            "access_service_type",
            "runtime_class_name",
            "blocked_egress_cidrs",
            "allow_smtp_egress",
        ]

    def clean(self) -> dict[str, Any]:
        """A new kubeconfig must pass check_kubeconfig for the region's sandbox flag; so must the stored one
        when the flag is turned off (an http server allowed for a sandbox is not allowed for a region)."""
        cleaned = super().clean() or {}
        sandbox = bool(cleaned.get("sandbox"))
        text, field = cleaned.get("kubeconfig") or "", "kubeconfig"
        if not text and not cleaned.get("clear_kubeconfig") and "sandbox" in self.changed_data:
            text = self.instance.get_kubeconfig() if self.instance.has_kubeconfig else ""
            field = "sandbox"
        if text:
            try:
                check_kubeconfig(text, sandbox=sandbox)
            except KubeconfigError as exc:
                prefix = "" if field == "kubeconfig" else "The stored kubeconfig is not allowed without it: "
                self.add_error(field, f"{prefix}{exc}")
        return cleaned

    def save(self, commit: bool = True) -> Region:
        region = super().save(commit=False)
        if self.cleaned_data.get("clear_kubeconfig"):
            region.set_kubeconfig("")
        elif self.cleaned_data.get("kubeconfig"):
            region.set_kubeconfig(self.cleaned_data["kubeconfig"])
        if commit:
            region.save()
        return region


class CapacityInline(admin.TabularInline):
    model = RegionCapacity
    extra = 0
    fields = ["gpu_type", "gpus", "vcpu", "memory_gib", "observed_at"]
    readonly_fields = ["observed_at"]


@admin.register(Region)
class RegionAdmin(AuditedModelAdmin):
    form = RegionForm
    list_display = ["slug", "name", "status", "in_cluster", "has_kubeconfig", "sandbox", "storage_class"]
    list_filter = ["status"]
    inlines = [CapacityInline]

    def save_model(self, request: HttpRequest, obj: Region, form: forms.ModelForm, change: bool) -> None:
        # The form has already put the kubeconfig, encrypted, on `obj`; the audit row records changed
        # values, and a cluster credential must not land there in plaintext.
        if form.cleaned_data.get("kubeconfig"):
            form.cleaned_data["kubeconfig"] = "(replaced; encrypted at rest)"
        super().save_model(request, obj, form, change)

    @admin.display(boolean=True, description="kubeconfig")
    def has_kubeconfig(self, region: Region) -> bool:
        return region.has_kubeconfig


@admin.register(GpuType)
class GpuTypeAdmin(AuditedModelAdmin):
    list_display = ["slug", "vendor", "model", "memory_gib", "product_label", "resource_name"]


@admin.register(InstanceType)
class InstanceTypeAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "gpu_type", "gpu_count", "vcpu", "memory_gib", "price_per_hour", "active"]
    list_filter = ["active", "gpu_type"]
    list_editable = ["price_per_hour", "active"]

    def save_model(self, request: HttpRequest, obj: InstanceType, form: Any, change: bool) -> None:
        # A price change is a new price version from now on (billing rates usage at the version in force).
        new_price = obj.price_per_hour
        if change and "price_per_hour" in form.changed_data:
            from apps.billing.services import price_change

            obj.price_per_hour = InstanceType.objects.get(pk=obj.pk).price_per_hour
            super().save_model(request, obj, form, change)
            price_change(actor=request.user, instance_type=obj, price_per_hour=new_price)
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)


@admin.register(Image)
class ImageAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "reference", "active"]
    filter_horizontal = ["regions"]


@admin.register(ImagePolicy)
class ImagePolicyAdmin(AuditedModelAdmin):
    list_display = ["__str__", "allow_custom_images", "allowed_registries"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ImagePolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RegionNode)
class RegionNodeAdmin(admin.ModelAdmin):
    """What the operator last saw of each node; it rewrites these rows on every capacity pass, so staff
    only read them (cordon a node with kubectl, not here)."""

    list_display = [
        "name",
        "region",
        "state",
        "gpu_type",
        "gpus_requested",
        "gpus_allocatable",
        "zone",
        "instance_type",
        "observed_at",
    ]
    list_filter = ["region", "state", "gpu_type"]
    search_fields = ["name", "reason"]
    list_select_related = ["region", "gpu_type"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
