"""Admin actions that delete storage through its services, never by deleting rows.

Deleting a Volume, Bucket or AccessKey row would leave its claim in the cluster, its bucket or key on the S3
service (working, unbilled and out of sight) and no audit event. So the admin cannot delete those rows; these
actions call the same services as the API instead (audited with the staff user, via "admin", and the
reason below), and report each refusal (an attached volume, a bucket that is not empty) by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from apps.accounts.acting import acting_user
from apps.core.errors import DomainError

ADMIN_REASON = "deleted by staff in the admin"


def run_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    act: Callable[[Any, Any], Any],
    done: str,
) -> None:
    """`act(staff_user, obj)` for each object; one refusal does not stop the others."""
    actor = acting_user(request)
    count = 0
    for obj in objects:
        try:
            act(actor, obj)
        except DomainError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
            continue
        count += 1
    modeladmin.message_user(request, f"{done}: {count}.", messages.SUCCESS if count else messages.WARNING)
