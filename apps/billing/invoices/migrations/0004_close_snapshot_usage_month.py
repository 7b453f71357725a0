from decimal import Decimal

import django.db.models.deletion
from django.db import migrations, models

# Lines say which month their usage happened in (an adjustment bills an earlier month on a later invoice)
# and what they are; existing lines are of their invoice's month. The guard of a finalized invoice's lines
# (0002, 0003) now refuses an UPDATE of these columns too.
BACKFILL = """
UPDATE billing_invoices_invoiceline AS l SET usage_month = i.month
FROM billing_invoices_invoice AS i WHERE i.id = l.invoice_id AND l.usage_month IS NULL;
"""

GUARD = """
CREATE OR REPLACE FUNCTION billing_invoices_line_guard() RETURNS trigger AS $$
DECLARE
    finalized boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT status = 'finalized' INTO finalized FROM billing_invoices_invoice WHERE id = NEW.invoice_id;
    ELSE
        SELECT status = 'finalized' INTO finalized FROM billing_invoices_invoice WHERE id = OLD.invoice_id;
    END IF;
    IF finalized THEN
        IF TG_OP <> 'UPDATE' THEN
            RAISE EXCEPTION 'lines of a finalized invoice: %% refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (NEW.invoice_id, NEW.position, NEW.meter, NEW.quantity_seconds, NEW.unit_price_per_hour, NEW.amount,
            NEW.cluster_id, NEW.cluster_name, NEW.rank%(new)s)
           IS DISTINCT FROM
           (OLD.invoice_id, OLD.position, OLD.meter, OLD.quantity_seconds, OLD.unit_price_per_hour, OLD.amount,
            OLD.cluster_id, OLD.cluster_name, OLD.rank%(old)s)
        THEN
            RAISE EXCEPTION 'lines of a finalized invoice: UPDATE of money or cluster columns refused'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

SQL = GUARD % {"new": ", NEW.kind, NEW.usage_month", "old": ", OLD.kind, OLD.usage_month"}
REVERSE = GUARD % {"new": "", "old": ""}


class Migration(migrations.Migration):
    dependencies = [
        ("billing_invoices", "0003_cluster_lines"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoiceline",
            name="kind",
            field=models.CharField(
                choices=[
                    ("usage", "Usage of the invoice's month"),
                    ("adjustment", "Usage of an earlier month that reached the ledger after it was invoiced"),
                    ("credit", "Credit carried between invoices, or returned to the wallet"),
                ],
                db_default="usage",
                default="usage",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="invoiceline",
            name="usage_month",
            field=models.DateField(null=True, help_text="The first day of the month the usage happened in."),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="invoiceline",
            name="usage_month",
            field=models.DateField(help_text="The first day of the month the usage happened in."),
        ),
        migrations.RemoveConstraint(model_name="invoiceline", name="invoice_line_unique_meter_price"),
        migrations.RemoveConstraint(model_name="invoiceline", name="invoice_line_unique_node_meter_price"),
        migrations.AddConstraint(
            model_name="invoiceline",
            constraint=models.UniqueConstraint(
                condition=models.Q(("cluster_id__isnull", True)),
                fields=("invoice", "usage_month", "meter", "unit_price_per_hour"),
                name="invoice_line_unique_meter_price",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoiceline",
            constraint=models.UniqueConstraint(
                condition=models.Q(("cluster_id__isnull", False)),
                fields=("invoice", "usage_month", "cluster_id", "rank", "meter", "unit_price_per_hour"),
                name="invoice_line_unique_node_meter_price",
            ),
        ),
        migrations.CreateModel(
            name="CloseSnapshot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("month", models.DateField()),
                ("cutoff", models.DateTimeField()),
                ("started_at", models.DateTimeField()),
                ("settled_before", models.DateTimeField()),
                ("state", models.JSONField()),
                ("recent_rows", models.PositiveIntegerField(default=0)),
                ("recent_reversals", models.PositiveIntegerField(default=0)),
                ("rebuilt", models.BooleanField(default=False)),
                (
                    "carried_credit",
                    models.DecimalField(decimal_places=2, default=Decimal("0.00"), max_digits=14),
                ),
                (
                    "invoice",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="close_snapshot",
                        to="billing_invoices.invoice",
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.tenant"
                    ),
                ),
            ],
            options={
                "ordering": ["tenant", "month"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "month"), name="close_snapshot_one_per_tenant_month"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("carried_credit__gte", 0)), name="close_snapshot_carry_nonnegative"
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="PeriodClose",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("month", models.DateField()),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField()),
                ("invoices", models.PositiveIntegerField(default=0)),
                ("failed_tenants", models.JSONField(blank=True, default=list)),
            ],
            options={
                "ordering": ["-started_at"],
                "indexes": [models.Index(fields=["month", "-started_at"], name="billing_inv_month_ba9734_idx")],
            },
        ),
        migrations.RunSQL(SQL, REVERSE),
    ]
