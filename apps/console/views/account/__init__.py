"""Tenant account pages, one module per page family: API tokens (tokens.py), members and invitations
(members.py), quotas (quotas.py), billing (billing.py) and the audit log (audit.py); templates in
templates/console/account/.

Each page resolves the tenant through `tenant.tenant_page` (another tenant answers 404, a missing permission
the 403 page with the reason), validates input with the API's own serializers (`page_helpers.validated`) and
writes through the same services, so the console and the API refuse the same things with the same messages;
a refusal is shown on the page's form (`page_helpers.form_error`).
"""
