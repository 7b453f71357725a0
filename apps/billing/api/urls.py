from django.urls import path

from apps.billing.api import tag_budgets, views

T = "tenants/<slug:tenant_slug>/billing"
S = "staff/tenants/<slug:staff_tenant_slug>"

urlpatterns = [
    path(f"{T}/usage", views.UsageView.as_view(), name="billing-usage"),
    path(f"{T}/usage/export", views.UsageExportView.as_view(), name="billing-usage-export"),
    path(f"{T}/balance", views.BalanceView.as_view(), name="billing-balance"),
    path(f"{T}/budget", views.BudgetView.as_view(), name="billing-budget"),
    path(f"{T}/credits", views.CreditListView.as_view(), name="billing-credit-list"),
    path(f"{T}/tag-budgets", tag_budgets.TagBudgetListView.as_view(), name="billing-tag-budget-list"),
    path(
        f"{T}/tag-budgets/<uuid:tag_budget_id>",
        tag_budgets.TagBudgetDetailView.as_view(),
        name="billing-tag-budget-detail",
    ),
    path(f"{T}/invoices/<uuid:invoice_id>/pdf", views.InvoicePdfView.as_view(), name="invoice-pdf"),
    path(f"{S}/credit-grants", views.StaffCreditGrantView.as_view(), name="staff-credit-grant"),
    path(f"{S}/billing-mode", views.StaffBillingModeView.as_view(), name="staff-billing-mode"),
]
