from typing import Any

from apps.accounts.models import User


def acting_user(request: Any) -> User:
    """The signed-in user of a request that passed authentication (views behind IsAuthenticated)."""
    user = request.user
    if not isinstance(user, User):
        raise TypeError("acting_user() needs an authenticated request")
    return user
