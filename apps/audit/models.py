from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """One mutating action. Append-only: the model refuses updates and a database trigger refuses
    UPDATE and DELETE, so not even a bug or a shell session can rewrite history."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_token = models.ForeignKey(
        "accounts.ApiToken", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A snapshot, so the event still reads right after the user changes email.
    actor_label = models.CharField(max_length=254)
    via = models.CharField(max_length=16)  # api, console, admin, command, task, system
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    changes = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "action", "-created_at"]),
        ]

    def __str__(self) -> str:
        target = f"{self.target_type}:{self.target_id}"
        return f"{self.created_at:%Y-%m-%dT%H:%M:%SZ} {self.actor_label} {self.action} {target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Audit events are append-only.")
