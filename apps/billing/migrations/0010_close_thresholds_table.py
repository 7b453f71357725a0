from django.db import migrations

# The month close's wallet thresholds (apps/billing/invoices/closing.py, THRESHOLDS_TABLE): an ordinary
# table, so parallel workers can read it when they scan the month (a temporary table would keep the month's
# aggregation in one process), and unlogged, since it only lives for one close, which the close's advisory
# lock keeps alone.
CREATE = """
CREATE UNLOGGED TABLE billing_close_thresholds (
    tenant_id uuid PRIMARY KEY,
    th timestamptz[] NOT NULL
)
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0009_ledger_month_scans")]

    operations = [migrations.RunSQL(CREATE, "DROP TABLE billing_close_thresholds")]
