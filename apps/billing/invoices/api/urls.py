from django.urls import path

from apps.billing.invoices.api import views

B = "tenants/<slug:tenant_slug>/billing/invoices"

urlpatterns = [
    path(B, views.InvoiceListView.as_view(), name="invoice-list"),
    path(f"{B}/<uuid:invoice_id>", views.InvoiceDetailView.as_view(), name="invoice-detail"),
    path(f"{B}/<uuid:invoice_id>/html", views.InvoiceHtmlView.as_view(), name="invoice-html"),
]
