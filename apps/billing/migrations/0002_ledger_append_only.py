from django.db import migrations

# The ledger is history: rows are never changed or removed; corrections are reversing rows.
SQL = """
CREATE OR REPLACE FUNCTION billing_usage_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_usagerecord is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_usage_append_only
    BEFORE UPDATE OR DELETE ON billing_usagerecord
    FOR EACH ROW EXECUTE FUNCTION billing_usage_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS billing_usage_append_only ON billing_usagerecord;
DROP FUNCTION IF EXISTS billing_usage_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
