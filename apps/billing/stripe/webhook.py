"""POST /api/v1/stripe/webhook: Stripe's deliveries. Public (Stripe signs; no session, no token, no CSRF),
not throttled like API clients (a plain Django view, outside DRF). It verifies the signature on the raw
body, stores the event id once and answers 200 at once; a Celery task processes it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.billing.stripe import events, gateway
from apps.core.errors import error_body


@method_decorator(csrf_exempt, name="dispatch")
class StripeWebhookView(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = JsonResponse(error_body("method_not_allowed", "Only POST is allowed."), status=405)
        response["Allow"] = "POST"
        return response

    def post(self, request: HttpRequest) -> JsonResponse:
        secret = settings.STRIPE_WEBHOOK_SECRET
        if not secret or not gateway.is_configured():
            return JsonResponse(
                error_body("stripe_not_configured", "Payments are not configured on this installation."),
                status=503,
            )
        try:
            event = gateway.parse_webhook(request.body, request.headers.get("Stripe-Signature"), secret)
        except gateway.InvalidWebhook:
            return JsonResponse(
                error_body("invalid_signature", "The Stripe-Signature header does not verify."), status=400
            )
        created = events.webhook_event_store(event=event)
        return JsonResponse({"received": True, "duplicate": not created})
