"""Members and invitations: roles, removing a member or leaving, inviting by email, revoking an
invitation."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render

from apps.console.views.page_helpers import form_error, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.tenants import access
from apps.tenants import selectors as tenant_selectors
from apps.tenants import services as tenant_services
from apps.tenants.api.serializers import InvitationCreateSerializer, MembershipUpdateSerializer
from apps.tenants.models import Membership
from apps.tenants.roles import Perm, Role, can_grant_role


def _context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    """The page's controls depend on what the caller's role may do."""
    return page.context(
        can_manage_members=page.can(Perm.MEMBERS_MANAGE),
        can_invite=page.can(Perm.INVITATIONS_MANAGE),
        **extra,
    )


def _members_context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    role = page.membership.role
    members = tenant_selectors.members_of(tenant=page.tenant).order_by("created_at", "pk")
    invitations = None
    if page.can(Perm.INVITATIONS_MANAGE):
        invitations = [
            i
            for i in tenant_selectors.invitations_of(tenant=page.tenant).order_by("-created_at")
            if i.state == "pending"
        ]
    grantable_roles = [r.value for r in Role if can_grant_role(role, r.value)]
    rows = [
        {
            "membership": m,
            "is_me": m.user_id == page.user.pk,
            "can_change": page.can(Perm.MEMBERS_MANAGE) and can_grant_role(role, m.role),
        }
        for m in members
    ]
    defaults = dict(
        rows=rows,
        invitations=invitations,
        grantable_roles=grantable_roles,
        invite_form={"email": "", "role": Role.MEMBER.value},
    )
    return _context(page, **{**defaults, **extra})


def _members_error(page: TenantPage, exc: DomainError, **extra: Any) -> HttpResponse:
    context = _members_context(page, **form_error(exc), **extra)
    return render(page.request, "console/account/members.html", context, status=exc.status_code)


def _member_of(page: TenantPage, member_id: Any) -> Membership:
    member = tenant_selectors.members_of(tenant=page.tenant).filter(pk=member_id).first()
    if member is None:
        raise Http404("Not found.")
    return member


@tenant_page(Perm.MEMBERS_READ)
def members(page: TenantPage) -> HttpResponse:
    return render(page.request, "console/account/members.html", _members_context(page))


@tenant_page(Perm.MEMBERS_READ, methods=("POST",), post_perm=Perm.MEMBERS_MANAGE)
def member_role(page: TenantPage, member_id: Any) -> HttpResponse:
    member = _member_of(page, member_id)
    try:
        page.require_status()
        data = validated(MembershipUpdateSerializer, {"role": page.request.POST.get("role", "")})
        tenant_services.membership_change_role(
            actor=page.user, actor_role=page.membership.role, membership=member, role=data["role"]
        )
    except DomainError as exc:
        return _members_error(page, exc, error_member=member.pk)
    messages.success(page.request, f"{member.user.email} is now {data['role']}.")
    return redirect("console:members", tenant_slug=page.tenant.slug)


@tenant_page(Perm.MEMBERS_LEAVE, methods=("GET", "POST"))
def member_remove(page: TenantPage, member_id: Any) -> HttpResponse:
    member = _member_of(page, member_id)
    leaving = member.user_id == page.user.pk
    context = _context(page, member=member, leaving=leaving)
    if page.request.method == "POST":
        try:
            page.require_status(cleanup=True)
            if not leaving:
                access.check_permission(membership=page.membership, perm=Perm.MEMBERS_MANAGE)
            tenant_services.membership_remove(
                actor=page.user, actor_role=page.membership.role, membership=member
            )
        except DomainError as exc:
            context.update(form_error(exc))
            return render(page.request, "console/account/member_remove.html", context, status=exc.status_code)
        if leaving:
            messages.success(page.request, f"You left {page.tenant.name}.")
            return redirect("console:home")
        messages.success(page.request, f"Removed {member.user.email}.")
        return redirect("console:members", tenant_slug=page.tenant.slug)
    if not leaving:
        page.require(Perm.MEMBERS_MANAGE)  # the 403 page, before asking to confirm
    return render(page.request, "console/account/member_remove.html", context)


@tenant_page(Perm.INVITATIONS_MANAGE, methods=("POST",))
def invite(page: TenantPage) -> HttpResponse:
    form = {"email": page.request.POST.get("email", "").strip(), "role": page.request.POST.get("role", "")}
    try:
        page.require_status()
        data = validated(InvitationCreateSerializer, form)
        invitation, _secret = tenant_services.invitation_create(
            actor=page.user, actor_role=page.membership.role, tenant=page.tenant, **data
        )
    except DomainError as exc:
        return _members_error(page, exc, invite_form=form, invite_failed=True)
    messages.success(
        page.request, f"Invited {invitation.email} as {invitation.role}; the link is in their email."
    )
    return redirect("console:members", tenant_slug=page.tenant.slug)


@tenant_page(Perm.INVITATIONS_MANAGE, methods=("GET", "POST"))
def invitation_revoke(page: TenantPage, invitation_id: Any) -> HttpResponse:
    invitation = tenant_selectors.invitations_of(tenant=page.tenant).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("Not found.")
    context = _context(page, invitation=invitation)
    if page.request.method == "POST":
        try:
            page.require_status(cleanup=True)
            tenant_services.invitation_revoke(actor=page.user, invitation=invitation)
        except DomainError as exc:
            context.update(form_error(exc))
            return render(
                page.request, "console/account/invitation_revoke.html", context, status=exc.status_code
            )
        messages.success(page.request, f"Revoked the invitation of {invitation.email}.")
        return redirect("console:members", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/invitation_revoke.html", context)
