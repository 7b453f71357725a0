from rest_framework import serializers


class TopupRequestSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text='Credit to buy, in the account currency (e.g. "50.00").'
    )


class CheckoutSerializer(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="Send the user here to pay (Stripe Checkout).")
    session_id = serializers.CharField()


class PortalSerializer(serializers.Serializer):
    # Stripe's URL as Stripe gives it: we do not check it, so the schema does not promise a well-formed URI.
    portal_url = serializers.CharField(help_text="Stripe's customer portal: cards, invoices, receipts.")
