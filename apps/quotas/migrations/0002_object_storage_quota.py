from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("quotas", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenantquota",
            name="max_object_storage_gib",
            # Existing tenants get the default limit of DEFAULT_QUOTA_MAX_OBJECT_STORAGE_GIB.
            field=models.PositiveIntegerField(
                default=1000,
                help_text="Bytes stored in the tenant's buckets, in GiB; at or past it the tenant's keys may "
                "no longer write (docs/storage.md).",
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="quotarequest",
            name="resource",
            field=models.CharField(
                choices=[
                    ("gpus", "GPUs (all types)"),
                    ("gpu_type", "GPUs of one type"),
                    ("instances", "Instances"),
                    ("vcpu", "vCPU"),
                    ("memory_gib", "Memory (GiB)"),
                    ("volume_gib", "Volume storage (GiB)"),
                    ("object_storage_gib", "Object storage (GiB)"),
                ],
                max_length=32,
            ),
        ),
    ]
