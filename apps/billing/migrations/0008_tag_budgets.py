# Tag budgets (issue 22): a monthly budget per tag of a tenant, and its alerts, each once per month and
# threshold. No index on the ledger's tags: every read of them is bounded by tenant and month through
# usage_period_start_idx (docs/billing.md "Tags").

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0007_ledger_tags_period_index'),
        ('tenants', '0002_tenant_suspension_stopped_instances'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TagBudget',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('key', models.CharField(max_length=63)),
                ('value', models.CharField(max_length=255)),
                ('monthly_amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenants.tenant')),
            ],
            options={
                'ordering': ['key', 'value'],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'key', 'value'), name='tag_budget_once_per_tag'), models.CheckConstraint(condition=models.Q(('monthly_amount__gt', 0)), name='tag_budget_positive')],
            },
        ),
        migrations.CreateModel(
            name='TagBudgetAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('month', models.DateField()),
                ('threshold', models.PositiveSmallIntegerField()),
                ('spend', models.DecimalField(decimal_places=6, max_digits=20)),
                ('budget', models.DecimalField(decimal_places=2, max_digits=14)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('tag_budget', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='billing.tagbudget')),
            ],
            options={
                'ordering': ['month', 'threshold'],
                'constraints': [models.UniqueConstraint(fields=('tag_budget', 'month', 'threshold'), name='tag_budget_alert_once')],
            },
        ),
    ]
