from django.urls import path

from apps.billing.invoices import views

app_name = "billing"

urlpatterns = [
    path("invoices/<uuid:invoice_id>/", views.invoice_page, name="invoice"),
    path("invoices/<uuid:invoice_id>/pdf/", views.invoice_pdf, name="invoice_pdf"),
]
