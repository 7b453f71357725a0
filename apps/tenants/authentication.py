from datetime import timedelta

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts import bearer, token_secrets
from apps.accounts.models import ApiToken, User
from apps.core import request_context

# Writing last_used_at on every request would turn every read into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = bearer.SCHEME

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        # Once the header says Bearer (in any case), the token decides: a bad one is 401, never a fall back
        # to the session, which the two-factor middleware did not check for such a request.
        parsed = bearer.parse(authentication.get_authorization_header(request).decode("latin-1"))
        if parsed is None:
            return None
        if parsed.token is None:
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <token>'.")
        return self._authenticate_token(parsed.token)

    def _authenticate_token(self, plaintext: str) -> tuple[User, ApiToken]:
        invalid = exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
        prefix = token_secrets.parse_prefix(plaintext)
        if prefix is None:
            raise invalid
        token = _tokens_with_membership().filter(prefix=prefix).first()
        if token is None or not token_secrets.matches(plaintext, token.secret_hash):
            raise invalid
        now = timezone.now()
        if token.revoked_at is not None or token.is_expired(now) or not token.user.is_active:
            raise invalid
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        request_context.update(token_id=token.pk, actor=f"user:{token.user_id}")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


def _tokens_with_membership() -> QuerySet[ApiToken]:
    """Tokens with their user, tenant and the user's membership there in one query: every tenant endpoint
    needs the membership next (tenants.access.access_membership), and a second round trip was a quarter
    of an instance list's queries (docs/benchmarks.md)."""
    from apps.tenants.models import Membership

    membership = Membership.objects.filter(user_id=OuterRef("user_id"), tenant_id=OuterRef("tenant_id"))
    return ApiToken.objects.select_related("user", "tenant").annotate(
        membership_id=Subquery(membership.values("pk")[:1]),
        membership_role=Subquery(membership.values("role")[:1]),
    )
