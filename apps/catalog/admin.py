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
    Region,
    RegionCapacity,
    RegionNode,
)
from apps.core import crypto


class RegionForm(forms.ModelForm):
    kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "autocomplete": "off"}),
        help_text="The operator's kubeconfig: paste one to replace the stored one (encrypted at rest, never "
        "shown again). Leave empty to keep it. Only a process holding FIELD_ENCRYPTION_KEYS can store it; in "
        "production that is the operator's pod (manage.py connect_region).",
    )
    clear_kubeconfig = forms.BooleanField(required=False, help_text="Remove the stored kubeconfig.")
    logs_kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "autocomplete": "off"}),
        help_text="The console's logs kubeconfig, whose identity may only read pod logs in tenant namespaces "
        "(encrypted at rest under LOGS_ENCRYPTION_KEYS, never shown again). Leave empty to keep it.",
    )
    clear_logs_kubeconfig = forms.BooleanField(required=False, help_text="Remove the logs kubeconfig.")

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
            "topology_block_label",
            "topology_rack_label",
            "max_cluster_nodes",
            "fabric_env",
            "rdma_resources",
        ]

    def clean(self) -> dict[str, Any]:
        """A new kubeconfig (the operator's or the logs one) must pass check_kubeconfig for the region's
        sandbox flag, and so must the stored one when the flag is turned off (an http server allowed for a
        sandbox is not allowed for a region). A process without the key set that encrypts it cannot store
        it (web never holds FIELD_ENCRYPTION_KEYS in production)."""
        cleaned = super().clean() or {}
        sandbox = bool(cleaned.get("sandbox"))
        for field, keys, flag in (
            ("kubeconfig", crypto.FIELD, "--kubeconfig"),
            ("logs_kubeconfig", crypto.LOGS, "--logs-kubeconfig"),
        ):
            text = cleaned.get(field) or ""
            if text and self._checked(field, text, sandbox=sandbox):
                self._storable(field, keys, f"manage.py connect_region <slug> {flag} FILE")
        # Turning the flag off: the stored kubeconfig is checked again where this process can read it (the
        # operator's client refuses it anyway when it connects).
        stored_again = "sandbox" in self.changed_data and not sandbox and self.instance.has_kubeconfig
        kept = not cleaned.get("kubeconfig") and not cleaned.get("clear_kubeconfig")
        if stored_again and kept and crypto.available(crypto.FIELD):
            self._checked("sandbox", self.instance.get_kubeconfig(), sandbox=False, stored=True)
        return cleaned

    def _checked(self, field: str, text: str, *, sandbox: bool, stored: bool = False) -> bool:
        try:
            check_kubeconfig(text, sandbox=sandbox)
        except KubeconfigError as exc:
            prefix = "The stored kubeconfig is not allowed without it: " if stored else ""
            self.add_error(field, f"{prefix}{exc}")
            return False
        return True

    def _storable(self, field: str, keys: crypto.KeySet, command: str) -> None:
        if not crypto.available(keys):
            self.add_error(
                field,
                f"This process holds no {keys.setting}, so it cannot store this credential: "
                f'run `{command}` where that key set is (docs/operations.md, "Adding a region").',
            )

    def save(self, commit: bool = True) -> Region:
        region = super().save(commit=False)
        if self.cleaned_data.get("clear_kubeconfig"):
            region.set_kubeconfig("")
        elif self.cleaned_data.get("kubeconfig"):
            region.set_kubeconfig(self.cleaned_data["kubeconfig"])
        if self.cleaned_data.get("clear_logs_kubeconfig"):
            region.set_logs_kubeconfig("")
        elif self.cleaned_data.get("logs_kubeconfig"):
            region.set_logs_kubeconfig(self.cleaned_data["logs_kubeconfig"])
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
    list_display = [
        "slug",
        "name",
        "status",
        "in_cluster",
        "has_kubeconfig",
        "has_logs_kubeconfig",
        "sandbox",
        "storage_class",
    ]
    list_filter = ["status"]
    inlines = [CapacityInline]

    def save_model(self, request: HttpRequest, obj: Region, form: forms.ModelForm, change: bool) -> None:
        # The form has already put the kubeconfig, encrypted, on `obj`; the audit row records changed
        # values, and a cluster credential must not land there in plaintext.
        for field in ("kubeconfig", "logs_kubeconfig"):
            if form.cleaned_data.get(field):
                form.cleaned_data[field] = "(replaced; encrypted at rest)"
        super().save_model(request, obj, form, change)

    @admin.display(boolean=True, description="kubeconfig")
    def has_kubeconfig(self, region: Region) -> bool:
        return region.has_kubeconfig

    @admin.display(boolean=True, description="logs kubeconfig")
    def has_logs_kubeconfig(self, region: Region) -> bool:
        return region.has_logs_kubeconfig


@admin.register(GpuType)
class GpuTypeAdmin(AuditedModelAdmin):
    list_display = ["slug", "vendor", "model", "memory_gib", "product_label", "resource_name"]


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
        "block",
        "rack",
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
