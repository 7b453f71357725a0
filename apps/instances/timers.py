"""The timer sweep: instances past their auto-stop or maximum runtime are stopped, and those whose pod never
turned Ready are failed (run every 30 s by apps.instances.tasks.enforce_instance_timers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.instances import services
from apps.instances.models import Instance
from apps.instances.states import AWAITING_READY, Action, State


def _timer_due(instance: Instance, now: Any) -> str | None:
    """Timers count billed time: a pod that holds GPUs without ever turning Ready counts too."""
    run_started = instance.billing_since
    if (
        instance.auto_stop_after
        and run_started
        and run_started + timedelta(seconds=instance.auto_stop_after) <= now
    ):
        return "auto_stop_after"
    if instance.max_runtime and instance.billed_seconds(now) >= instance.max_runtime:
        return "max_runtime"
    return None


def _not_ready_for_too_long(instance: Instance, now: Any, timeout: int) -> bool:
    return instance.state in AWAITING_READY and instance.state_changed_at + timedelta(seconds=timeout) <= now


def enforce_timers(now: Any = None) -> int:
    """The timer sweep over instances that run or are on their way to running. Stops (never deletes) those
    past auto_stop_after (seconds of the current billed run) or max_runtime (billed seconds in total), and
    fails those whose pod has not turned Ready within INSTANCE_READY_TIMEOUT_SECONDS of entering
    provisioning or starting (reason not_ready; their pod is deleted and their billing stops). Returns how
    many instances it stopped or failed."""
    now = now or timezone.now()
    timeout = int(settings.INSTANCE_READY_TIMEOUT_SECONDS)
    candidates = Instance.objects.filter(
        Q(state__in=[State.RUNNING, *AWAITING_READY])
        & (
            Q(auto_stop_after__isnull=False)
            | Q(max_runtime__isnull=False)
            | Q(state__in=AWAITING_READY, state_changed_at__lte=now - timedelta(seconds=timeout))
        )
    )
    acted = 0
    for instance in candidates.select_related("tenant"):
        if _not_ready_for_too_long(instance, now, timeout):
            if services.instance_fail_not_ready(instance=instance, now=now, timeout_seconds=timeout):
                acted += 1
            continue
        reason = _timer_due(instance, now)
        if reason is None:
            continue
        try:
            services.instance_act(actor=None, instance=instance, action=Action.STOP, reason=reason)
            acted += 1
        except services.InvalidState:
            continue  # its state changed meanwhile
    return acted
