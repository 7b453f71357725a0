from collections.abc import Iterable
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db.models import CharField, Count, JSONField, Prefetch, Q, QuerySet, Sum, UUIDField
from django.db.models.expressions import RawSQL

from apps.accounts.models import SshKey
from apps.catalog.models import GpuType, InstanceType, Region
from apps.instances import logs
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import State
from apps.storage.models import Volume, VolumeAttachment


def instances_of(*, tenant: Any) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(tenant=tenant)
        .select_related("region", "instance_type", "gpu_type", "image")
        .prefetch_related(
            Prefetch("ssh_keys", queryset=SshKey.objects.only("id")),
            Prefetch("volume_attachments", queryset=VolumeAttachment.objects.select_related("volume")),
        )
    )


def instances_for_api(*, tenant: Any) -> QuerySet[Instance]:
    """Instances as the API shows them, one query whatever the page: the catalog slugs, SSH key ids and
    attached volumes come as subqueries of each row (apps/instances/api/representation.py reads them).

    Written as SQL because they are on the path of every list and detail request: Django spent longer
    compiling the same subqueries built as expressions than PostgreSQL took to run them, and as joins the
    paginator's COUNT(*) kept them (a subquery annotation it drops). They name the outer table, so this
    queryset is for reading rows, not for nesting inside another query."""
    return Instance.objects.filter(tenant=tenant).annotate(**_API_COLUMNS)


def api_columns(
    instance: Instance,
    *,
    gpu_type: GpuType | None,
    ssh_keys: Iterable[SshKey],
    attachments: Iterable[VolumeAttachment],
) -> dict[str, Any]:
    """The columns instances_for_api adds to a row, from relations already in memory: for an instance
    loaded otherwise, or one just launched (rendered without reading it back). `gpu_type` is the
    instance's (the launch has it as its instance type's, from which it was frozen this moment);
    `ssh_keys` and `attachments` in the API's order (by name, and by mount path)."""
    return {
        "region_slug": instance.region.slug,
        "instance_type_slug": instance.instance_type.slug,
        "gpu_type_slug": gpu_type.slug if gpu_type is not None else None,
        "ssh_key_id_list": [key.pk for key in ssh_keys],
        "attachment_list": [
            {
                name: getattr(a if column.startswith("a.") else a.volume, column[2:])
                for name, column in _ATTACHMENT_COLUMNS
            }
            for a in attachments
        ],
    }


# An attachment as the API lists it: each key and its column, of the attachment (a.) or of its volume (v.).
# Read by the SQL of instances_for_api and, as attributes of the same names, by api_columns.
_ATTACHMENT_COLUMNS = (
    ("volume_id", "a.volume_id"),
    ("name", "v.name"),
    ("mount_path", "a.mount_path"),
    ("size_gib", "v.size_gib"),
    ("access_mode", "v.access_mode"),
    ("state", "v.state"),
    ("delete_with_instance", "a.delete_with_instance"),
)


def _api_columns() -> dict[str, RawSQL]:
    outer = Instance._meta.db_table
    through = Instance.ssh_keys.through._meta.db_table
    keys, attachments, volumes = SshKey._meta.db_table, VolumeAttachment._meta.db_table, Volume._meta.db_table

    def slug(model: Any, column: str) -> RawSQL:
        sql = f"SELECT c.slug FROM {model._meta.db_table} c WHERE c.id = {outer}.{column}"  # noqa: S608
        return RawSQL(sql, (), output_field=CharField())  # noqa: S611  (table and column names only)

    attachment = ", ".join(f"'{name}', {column}" for name, column in _ATTACHMENT_COLUMNS)
    return {
        "region_slug": slug(Region, "region_id"),
        "instance_type_slug": slug(InstanceType, "instance_type_id"),
        "gpu_type_slug": slug(GpuType, "gpu_type_id"),
        "ssh_key_id_list": RawSQL(  # noqa: S611  (no value from outside: table names only)
            f"ARRAY(SELECT t.sshkey_id FROM {through} t JOIN {keys} k ON k.id = t.sshkey_id"  # noqa: S608
            f" WHERE t.instance_id = {outer}.id ORDER BY k.name, k.id)",
            (),
            output_field=ArrayField(UUIDField()),
        ),
        "attachment_list": RawSQL(  # noqa: S611
            f"COALESCE((SELECT jsonb_agg(jsonb_build_object({attachment}) ORDER BY a.mount_path, a.id)"  # noqa: S608
            f" FROM {attachments} a JOIN {volumes} v ON v.id = a.volume_id WHERE a.instance_id = {outer}.id),"
            " '[]'::jsonb)",
            (),
            output_field=JSONField(),
        ),
    }


_API_COLUMNS = _api_columns()


# The rows a tenant's quota counts: live, or (never in practice) terminated but still marked as holding
# compute. Matches the partial index instance_quota_rows_idx, so counting reads live rows only, never the
# tenant's terminated history.
QUOTA_ROWS = ~Q(state=State.TERMINATED) | Q(holds_compute=True)


def quota_usage_of(tenant: Any) -> dict[str, Any]:
    """What the tenant's instances count against its quota (apps/quotas/usage.py; registered in
    InstancesConfig.ready): live instances, and the GPUs, vCPU and memory of those holding compute. One
    statement, grouped by GPU type and region."""
    holds = Q(holds_compute=True)
    rows = (
        Instance.objects.filter(QUOTA_ROWS, tenant=tenant)
        .values("gpu_type_id", "region_id")
        .annotate(
            instances=Count("id", filter=~Q(state=State.TERMINATED)),
            gpus=Sum("gpu_count", filter=holds),
            vcpu=Sum("vcpu", filter=holds, default=0),
            memory_gib=Sum("memory_gib", filter=holds, default=0),
        )
        .order_by()
    )
    totals = {"instances": 0, "gpus": 0, "vcpu": 0, "memory_gib": 0}
    by_type: dict[tuple[Any, Any], int] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        for name in totals:
            totals[name] += values[name] or 0
        if row["gpu_type_id"] is not None and row["gpus"] is not None:
            by_type[(row["gpu_type_id"], row["region_id"])] = row["gpus"]
    return {**totals, "gpus_by_type_region": by_type}


def held_by_pool(*, region_id: Any = None, gpu_type_id: Any = None) -> dict[tuple[Any, Any], dict[str, int]]:
    """(region_id, gpu_type_id or None) -> GPUs, vCPU and memory held by every tenant's instances, narrowed
    to one region and GPU type when given: what the catalog's availability subtracts (apps/catalog/holdings.py
    asks it; registered in InstancesConfig.ready)."""
    held = Instance.objects.filter(holds_compute=True)
    if region_id is not None:
        held = held.filter(region_id=region_id)
    if gpu_type_id is not None:
        held = held.filter(gpu_type_id=gpu_type_id)
    rows = held.values("region_id", "gpu_type_id").annotate(
        gpus=Sum("gpu_count"), vcpu=Sum("vcpu"), memory_gib=Sum("memory_gib")
    )
    return {
        (r["region_id"], r["gpu_type_id"]): {
            "gpus": r["gpus"],
            "vcpu": r["vcpu"],
            "memory_gib": r["memory_gib"],
        }
        for r in rows
    }


def events_of(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return InstanceEvent.objects.filter(instance=instance)


def recent_events_of(*, tenant: Any, limit: int = 10) -> QuerySet[InstanceEvent]:
    """The tenant's latest instance events, newest first (the console dashboard)."""
    return (
        InstanceEvent.objects.filter(instance__tenant=tenant)
        .select_related("instance")
        .order_by("-created_at", "-id")[:limit]
    )


def pod_log_tail(*, instance: Instance, tail_lines: int = 200) -> str | None:
    """The last lines of the instance's pod log, or None when there is none to read (apps/instances/logs.py:
    the operator app reads them). Never raises."""
    return logs.pod_log_tail(instance=instance, tail_lines=tail_lines)


def instance_log(*, instance: Instance, query: logs.LogQuery) -> logs.InstanceLog:
    """The API's view of the pod log (apps/instances/logs.py): a terminated instance has none (its pod went
    with it), without asking the cluster."""
    return logs.instance_log(instance=instance, query=query, terminated=instance.state == State.TERMINATED)
