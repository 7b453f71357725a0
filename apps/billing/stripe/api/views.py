"""Payments through Stripe: top-ups and card set-up (Checkout) and the customer portal. Each answers 503
stripe_not_configured when the installation has no Stripe keys."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.billing.stripe import checkout
from apps.billing.stripe.api.serializers import CheckoutSerializer, PortalSerializer, TopupRequestSerializer
from apps.core.idempotency import idempotent
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm

# A tenant suspended for non-payment must still be able to pay.
_PAYING = frozenset({"POST"})

_NOT_CONFIGURED = OpenApiResponse(
    description="Stripe is not configured (stripe_not_configured) or unreachable."
)


class TopupView(TenantAPIView):
    permission_map = {"POST": Perm.BILLING_WRITE}
    allowed_when_suspended = _PAYING
    serializer_class = TopupRequestSerializer

    @extend_schema(
        summary="Buy prepaid credit",
        description=(
            "Opens a Stripe Checkout Session (mode=payment) for `amount`; the credit is added to the wallet "
            "when Stripe reports the payment (webhook), not before. Bounds: STRIPE_TOPUP_MIN..MAX."
        ),
        request=TopupRequestSerializer,
        responses={201: CheckoutSerializer, 503: _NOT_CONFIGURED},
        examples=[OpenApiExample("Fifty", request_only=True, value={"amount": "50.00"})],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = TopupRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        opened = checkout.checkout_topup_create(
            actor=acting_user(request), tenant=self.tenant, amount=serializer.validated_data["amount"]
        )
        return Response({"checkout_url": opened.url, "session_id": opened.record.session_id}, status=201)


class CardSetupView(TenantAPIView):
    permission_map = {"POST": Perm.BILLING_WRITE}
    allowed_when_suspended = _PAYING
    serializer_class = CheckoutSerializer

    @extend_schema(
        summary="Put a card on file",
        description="Opens a Stripe Checkout Session (mode=setup) that saves a card for the tenant.",
        request=None,
        responses={201: CheckoutSerializer, 503: _NOT_CONFIGURED},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        opened = checkout.checkout_card_setup_create(actor=acting_user(request), tenant=self.tenant)
        return Response({"checkout_url": opened.url, "session_id": opened.record.session_id}, status=201)


class PortalView(TenantAPIView):
    permission_map = {"POST": Perm.BILLING_WRITE}
    allowed_when_suspended = _PAYING
    serializer_class = PortalSerializer

    @extend_schema(
        summary="Open the billing portal",
        description="A short-lived link to Stripe's customer portal (cards, invoices, receipts).",
        request=None,
        responses={200: PortalSerializer, 503: _NOT_CONFIGURED},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        url = checkout.portal_session_create(actor=acting_user(request), tenant=self.tenant)
        return Response({"portal_url": url})
