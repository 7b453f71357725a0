from django.urls import path

from apps.billing.stripe.api import views
from apps.billing.stripe.webhook import StripeWebhookView

T = "tenants/<slug:tenant_slug>/billing"

urlpatterns = [
    path(f"{T}/topups", views.TopupView.as_view(), name="billing-topup"),
    path(f"{T}/card-setup", views.CardSetupView.as_view(), name="billing-card-setup"),
    path(f"{T}/portal", views.PortalView.as_view(), name="billing-portal"),
    path("stripe/webhook", StripeWebhookView.as_view(), name="stripe-webhook"),
]
