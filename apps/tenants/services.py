"""Writes for tenants, memberships and invitations. Each runs in one transaction and audits itself."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import ApiToken, User
from apps.audit.services import audit_record, diff
from apps.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from apps.tenants import notifications
from apps.tenants.models import Invitation, Membership, Tenant, TenantStatus
from apps.tenants.roles import Role, can_grant_role
from apps.tenants.signals import tenant_closing, tenant_created, tenant_status_changed, tenant_suspended

logger = logging.getLogger(__name__)

RESERVED_SLUGS = frozenset({"admin", "api", "new", "me", "settings", "staff", "system", "gpucloud", "www"})


def _unique_slug_from(name: str) -> str:
    base = slugify(name)[:32].strip("-") or "tenant"
    if base in RESERVED_SLUGS:
        base = f"{base}-org"
    candidate = base
    while Tenant.objects.filter(slug=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


@transaction.atomic
def tenant_create(*, user: User, name: str, slug: str | None = None) -> Tenant:
    """Create a tenant with `user` as its owner."""
    if not user.email_verified:
        raise Forbidden("Verify your email address before creating a tenant.", code="email_unverified")
    owned = Membership.objects.filter(user=user, role=Role.OWNER).exclude(tenant__status=TenantStatus.CLOSED)
    if owned.count() >= settings.MAX_TENANTS_PER_USER:
        raise Forbidden(
            f"You already own {settings.MAX_TENANTS_PER_USER} tenants, the most one person may own.",
            code="tenant_limit",
        )
    if slug is not None and slug in RESERVED_SLUGS:
        raise InvalidInput("This slug is reserved.", fields={"slug": ["This slug is reserved."]})
    tenant = Tenant(name=name, slug=slug or _unique_slug_from(name), created_by=user)
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError as exc:
        raise InvalidInput(
            "This slug is already taken.", fields={"slug": ["This slug is already taken."]}
        ) from exc
    membership = Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
    # Its default quota (visible to staff from day one) and its sign-up credit, from the apps that own them.
    tenant_created.send(sender=Tenant, tenant=tenant, actor=user)
    audit_record(
        actor=user,
        action="tenant.create",
        target=tenant,
        tenant=tenant,
        changes={"name": name, "slug": tenant.slug},
    )
    audit_record(
        actor=user,
        action="member.add",
        target=membership,
        tenant=tenant,
        changes={"user": user.email, "role": Role.OWNER},
    )
    return tenant


@transaction.atomic
def tenant_update(*, actor: User, tenant: Tenant, name: str | None = None) -> Tenant:
    before = {"name": tenant.name}
    if name is not None:
        tenant.name = name
    changes = diff(before, {"name": tenant.name})
    if changes:
        tenant.save(update_fields=["name"])
        audit_record(actor=actor, action="tenant.update", target=tenant, tenant=tenant, changes=changes)
    return tenant


def _change_status(*, tenant_id: Any, status: str, reason: str) -> tuple[Tenant, dict[str, Any], str]:
    """Lock the tenant and set its status; returns it, the audit changes and the status it had. A status
    that really changes is announced (tenant_status_changed) once this commits."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
    if tenant.status == TenantStatus.CLOSED and status != TenantStatus.CLOSED:
        raise Conflict("A closed tenant cannot be reopened.", code="tenant_closed")
    before = tenant.status
    changes = diff(
        {"status": tenant.status, "status_reason": tenant.status_reason},
        {"status": status, "status_reason": reason},
    )
    tenant.status, tenant.status_reason = status, reason
    tenant.save(update_fields=["status", "status_reason"])
    if before != status:
        transaction.on_commit(lambda: _announce_status(tenant_id=tenant.pk, status=status))
    return tenant, changes, before


def _set_status(*, actor: User | None, tenant_id: Any, status: str, reason: str, action: str) -> Tenant:
    tenant, changes, _before = _change_status(tenant_id=tenant_id, status=status, reason=reason)
    audit_record(actor=actor, action=action, target=tenant, tenant=tenant, changes=changes)
    return tenant


SUSPENSION_STOP_REASON = "tenant_suspended"


def _announce_status(*, tenant_id: Any, status: str) -> None:
    """After commit: apps above this one react (object storage suspends or restores the tenant's keys). A
    receiver's failure is logged, not raised: the status change stands, and their periodic checks catch up."""
    for receiver, result in tenant_status_changed.send_robust(
        sender=Tenant, tenant_id=tenant_id, status=status
    ):
        if isinstance(result, Exception):
            logger.error("tenant_status_changed receiver %r failed: %s", receiver, result)


@transaction.atomic
def tenant_suspend(
    *, actor: User | None, tenant: Tenant, reason: str, stop_reason: str = SUSPENSION_STOP_REASON
) -> Tenant:
    """Suspend the tenant: it can no longer launch or start anything, and every instance it runs is stopped
    (never deleted; volumes kept) by the receivers of `tenant_suspended`, each stop recording `stop_reason`.
    What was stopped is kept on the tenant for the reactivation to report, audited and emailed."""
    if not reason.strip():
        raise InvalidInput(
            "A reason is required to suspend a tenant.", fields={"reason": ["This field is required."]}
        )
    tenant, changes, before = _change_status(
        tenant_id=tenant.pk, status=TenantStatus.SUSPENDED, reason=reason
    )
    responses = tenant_suspended.send(sender=Tenant, tenant=tenant, actor=actor, stop_reason=stop_reason)
    stopped: list[dict[str, str]] = []
    for _receiver, result in responses:
        stopped.extend(cast(list[dict[str, str]], result or []))
    # Suspending again (a new reason) keeps what the first suspension stopped.
    earlier = tenant.suspension_stopped_instances if before == TenantStatus.SUSPENDED else []
    tenant.suspension_stopped_instances = [*earlier, *stopped]
    tenant.save(update_fields=["suspension_stopped_instances"])
    audit_record(
        actor=actor,
        action="tenant.suspend",
        target=tenant,
        tenant=tenant,
        changes=changes,
        metadata={"stopped_instances": stopped},
    )
    names = [item["name"] for item in stopped]
    transaction.on_commit(
        lambda: notifications.send_status_email(tenant.pk, "suspended", reason=reason, instances=names)
    )
    return tenant


@transaction.atomic
def tenant_reactivate(*, actor: User | None, tenant: Tenant) -> Tenant:
    """Reactivate the tenant. The instances its suspension stopped stay stopped (the customer starts them):
    `suspension_stopped_instances` lists them, and the audit event and the email to its owners name them."""
    tenant, changes, before = _change_status(tenant_id=tenant.pk, status=TenantStatus.ACTIVE, reason="")
    stopped = tenant.suspension_stopped_instances if before == TenantStatus.SUSPENDED else []
    audit_record(
        actor=actor,
        action="tenant.reactivate",
        target=tenant,
        tenant=tenant,
        changes=changes,
        metadata={"stopped_by_suspension": stopped},
    )
    if before == TenantStatus.SUSPENDED:
        names = [item["name"] for item in stopped]
        transaction.on_commit(
            lambda: notifications.send_status_email(tenant.pk, "reactivated", reason="", instances=names)
        )
    return tenant


@transaction.atomic
def tenant_close(*, actor: User | None, tenant: Tenant, reason: str = "") -> Tenant:
    tenant = _set_status(
        actor=actor, tenant_id=tenant.pk, status=TenantStatus.CLOSED, reason=reason, action="tenant.close"
    )
    # A closed tenant keeps its data for billing and audit, but nothing may act for it any more.
    ApiToken.objects.filter(tenant=tenant, revoked_at__isnull=True).update(revoked_at=timezone.now())
    Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    # Its instances stop running (and billing) now, the operator deletes their pods and the namespace; its
    # volumes' deletion begins now, and its storage access keys are revoked by a task once this commits.
    tenant_closing.send(sender=Tenant, tenant=tenant, actor=actor)
    return tenant


def _lock_owners(tenant: Tenant) -> list[Membership]:
    # Locked in a fixed order so two concurrent demotions cannot both see "another owner remains".
    return list(Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER).order_by("pk"))


def _refuse_if_last_owner(membership: Membership, owners: list[Membership], what: str) -> None:
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise Conflict(f"The last owner cannot {what}; make someone else an owner first.", code="last_owner")


@transaction.atomic
def membership_change_role(*, actor: User, actor_role: str, membership: Membership, role: str) -> Membership:
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"Unknown role '{role}'.", fields={"role": [f"'{role}' is not a valid role."]})
    if not can_grant_role(actor_role, role) or not can_grant_role(actor_role, membership.role):
        raise Forbidden(
            f"Your role '{actor_role}' cannot change an '{membership.role}' into '{role}'.",
            code="role_forbidden",
        )
    owners = _lock_owners(membership.tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    if role != Role.OWNER:
        _refuse_if_last_owner(membership, owners, "be demoted")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="member.change_role",
        target=membership,
        tenant=membership.tenant,
        changes={"role": {"from": before, "to": role}},
        metadata={"user": membership.user.email},
    )
    return membership


@transaction.atomic
def membership_remove(*, actor: User, actor_role: str, membership: Membership) -> None:
    leaving = membership.user_id == actor.pk
    if not leaving and not can_grant_role(actor_role, membership.role):
        raise Forbidden(
            f"Your role '{actor_role}' cannot remove an '{membership.role}'.", code="role_forbidden"
        )
    owners = _lock_owners(membership.tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _refuse_if_last_owner(membership, owners, "leave" if leaving else "be removed")
    tenant = membership.tenant
    audit_record(
        actor=actor,
        action="member.leave" if leaving else "member.remove",
        target=membership,
        tenant=tenant,
        metadata={"user": membership.user.email, "role": membership.role},
    )
    # A former member's tokens must stop working at once.
    ApiToken.objects.filter(tenant=tenant, user_id=membership.user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    membership.delete()


def _invitation_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, actor: User, actor_role: str, tenant: Tenant, email: str, role: str
) -> tuple[Invitation, str]:
    """Invite `email`; returns the invitation and the plaintext secret (mailed, never stored)."""
    email = email.strip().lower()
    if not can_grant_role(actor_role, role):
        raise Forbidden(f"Your role '{actor_role}' cannot invite an '{role}'.", code="role_forbidden")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise Conflict(
            "This person is already a member.",
            code="already_member",
            fields={"email": ["Already a member of this tenant."]},
        )
    now = timezone.now()
    Invitation.objects.filter(
        tenant=tenant, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    secret = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        secret_hash=_invitation_digest(secret),
        invited_by=actor,
        expires_at=now + timedelta(hours=settings.INVITATION_TTL_HOURS),
    )
    audit_record(
        actor=actor,
        action="invitation.create",
        target=invitation,
        tenant=tenant,
        changes={"email": email, "role": role},
    )
    transaction.on_commit(lambda: notifications.send_invitation(invitation.pk, secret))
    return invitation, secret


@transaction.atomic
def invitation_revoke(*, actor: User, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != "pending":
        raise Conflict(f"This invitation is already {invitation.state}.", code="invitation_not_pending")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="invitation.revoke",
        target=invitation,
        tenant=invitation.tenant,
        metadata={"email": invitation.email},
    )
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, secret: str) -> Membership:
    """Join the tenant the invitation is for. The signed-in user's verified email must match it."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("tenant")
        .filter(secret_hash=_invitation_digest(secret))
        .first()
    )
    if invitation is None:
        raise NotFound("This invitation does not exist.", code="invitation_not_found")
    if invitation.state != "pending":
        raise Conflict(f"This invitation is {invitation.state}.", code=f"invitation_{invitation.state}")
    if invitation.email.lower() != user.email.lower():
        # Same answer as a wrong secret: an invitation for someone else is not yours to see.
        raise NotFound("This invitation does not exist.", code="invitation_not_found")
    if not user.email_verified:
        raise Forbidden("Verify your email address before accepting invitations.", code="email_unverified")
    if invitation.tenant.status != TenantStatus.ACTIVE:
        raise Conflict("This tenant is not accepting new members.", code="tenant_not_active")
    membership, created = Membership.objects.get_or_create(
        tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=user,
        action="invitation.accept",
        target=invitation,
        tenant=invitation.tenant,
        metadata={"email": invitation.email, "role": invitation.role},
    )
    if created:
        audit_record(
            actor=user,
            action="member.add",
            target=membership,
            tenant=invitation.tenant,
            changes={"user": user.email, "role": membership.role},
        )
    return membership
