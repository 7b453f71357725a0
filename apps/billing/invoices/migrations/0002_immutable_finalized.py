from django.db import migrations

# Invoice numbers come from a sequence. Finalized invoices are immutable for every client of the database,
# not only for Django models: their money columns and their lines can be neither updated nor deleted.
SQL = """
CREATE SEQUENCE IF NOT EXISTS billing_invoices_number_seq;

CREATE OR REPLACE FUNCTION billing_invoices_invoice_guard() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'finalized' THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'invoice % is finalized: DELETE refused', OLD.number
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (NEW.tenant_id, NEW.month, NEW.period_start, NEW.period_end, NEW.status, NEW.number, NEW.currency,
            NEW.subtotal, NEW.credits_applied, NEW.total, NEW.finalized_at)
           IS DISTINCT FROM
           (OLD.tenant_id, OLD.month, OLD.period_start, OLD.period_end, OLD.status, OLD.number, OLD.currency,
            OLD.subtotal, OLD.credits_applied, OLD.total, OLD.finalized_at) THEN
            RAISE EXCEPTION 'invoice % is finalized: UPDATE of its money columns refused', OLD.number
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_invoices_invoice_guard
    BEFORE UPDATE OR DELETE ON billing_invoices_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoices_invoice_guard();

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
            RAISE EXCEPTION 'lines of a finalized invoice: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (NEW.invoice_id, NEW.position, NEW.meter, NEW.quantity_seconds, NEW.unit_price_per_hour, NEW.amount)
           IS DISTINCT FROM
           (OLD.invoice_id, OLD.position, OLD.meter, OLD.quantity_seconds, OLD.unit_price_per_hour, OLD.amount)
        THEN
            RAISE EXCEPTION 'lines of a finalized invoice: UPDATE of money columns refused'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_invoices_line_guard
    BEFORE INSERT OR UPDATE OR DELETE ON billing_invoices_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_invoices_line_guard();
"""

REVERSE = """
DROP TRIGGER IF EXISTS billing_invoices_line_guard ON billing_invoices_invoiceline;
DROP FUNCTION IF EXISTS billing_invoices_line_guard();
DROP TRIGGER IF EXISTS billing_invoices_invoice_guard ON billing_invoices_invoice;
DROP FUNCTION IF EXISTS billing_invoices_invoice_guard();
DROP SEQUENCE IF EXISTS billing_invoices_number_seq;
"""


class Migration(migrations.Migration):
    dependencies = [("billing_invoices", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
