from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.acting import acting_user
from apps.core.errors import DomainError
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    readonly_fields = [
        "created_at",
        "kind",
        "name",
        "from_state",
        "to_state",
        "reason",
        "message",
        "actor_label",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _act(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Instance], action: Action) -> None:
    done = 0
    for instance in queryset:
        try:
            services.instance_act(
                actor=acting_user(request), instance=instance, action=action, reason="staff"
            )
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{instance.name}: {exc.message}", messages.ERROR)
    modeladmin.message_user(request, f"{action.value}: {done} instance(s).", messages.SUCCESS)


@admin.action(description="Stop selected instances")
def stop(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
    _act(modeladmin, request, queryset, Action.STOP)


@admin.action(description="Terminate selected instances")
def terminate(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
    _act(modeladmin, request, queryset, Action.TERMINATE)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "state", "desired_state", "region", "instance_type", "created_at"]
    list_filter = ["state", "region", "instance_type"]
    search_fields = ["name", "id", "tenant__slug"]
    list_select_related = ["tenant", "region", "instance_type"]
    readonly_fields = tuple(f.name for f in Instance._meta.fields if f.name != "env")
    exclude = ["env", "ssh_keys"]  # env values may be customers' secrets
    inlines = [InstanceEventInline]
    actions = [stop, terminate]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
