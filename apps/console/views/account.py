"""Tenant account pages: API tokens, members and invitations, quotas, billing and the audit log.

Each page resolves the tenant with apps.tenants.access (another tenant answers 404, a missing permission 403
with the reason), validates input with the API's own serializers and writes through the same services, so
the console and the API refuse the same things with the same messages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from rest_framework import serializers

from apps.accounts import scopes as scope_defs
from apps.accounts import selectors as account_selectors
from apps.accounts import services as account_services
from apps.accounts.api.serializers import ApiTokenCreateSerializer
from apps.audit.selectors import audit_events_of
from apps.billing import selectors as billing_selectors
from apps.billing import services as billing_services
from apps.billing.api.serializers import BudgetSerializer
from apps.billing.invoices.selectors import invoices_of
from apps.billing.models import BudgetAlert
from apps.billing.stripe import checkout as stripe_checkout
from apps.billing.stripe import gateway as stripe_gateway
from apps.billing.stripe.api.serializers import TopupRequestSerializer
from apps.billing.stripe.selectors import billing_status_of, card_on_file
from apps.catalog.models import GpuType, InstanceType, Region
from apps.console import charts
from apps.console.charts import bar_chart
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError, InvalidInput
from apps.quotas import selectors as quota_selectors
from apps.quotas import services as quota_services
from apps.quotas.api.serializers import QuotaRequestCreateSerializer
from apps.quotas.models import QuotaResource
from apps.tenants import access
from apps.tenants import selectors as tenant_selectors
from apps.tenants import services as tenant_services
from apps.tenants.api.serializers import InvitationCreateSerializer, MembershipUpdateSerializer
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Perm, Role, can_grant_role, grantable_scopes

AUDIT_PAGE_SIZE = 50
HOUR = Decimal(3600)


# --- plumbing -------------------------------------------------------------------------------------------


def _context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    """What the account pages' navigation and forms need to know about the caller's role."""
    return page.context(
        can_manage_members=page.can(Perm.MEMBERS_MANAGE),
        can_invite=page.can(Perm.INVITATIONS_MANAGE),
        can_request_quota=page.can(Perm.QUOTA_MANAGE),
        can_write_billing=page.can(Perm.BILLING_WRITE),
        **extra,
    )


def _validated(serializer_class: type[serializers.Serializer], data: dict[str, Any]) -> dict[str, Any]:
    """The API's validation of the same input; its field errors become an InvalidInput for the form."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    fields = {name: [str(m) for m in _flatten(errors)] for name, errors in serializer.errors.items()}
    first = next(iter(fields.items()), ("", ["Invalid input."]))
    message = f"{first[0]}: {first[1][0]}" if first[0] and first[0] != "non_field_errors" else first[1][0]
    raise InvalidInput(message, fields=fields)


def _flatten(errors: Any) -> list[Any]:
    if isinstance(errors, dict):
        return [m for value in errors.values() for m in _flatten(value)]
    if isinstance(errors, list):
        return [m for value in errors for m in _flatten(value)]
    return [errors]


def _form_error(exc: DomainError) -> dict[str, Any]:
    return {"error": exc.message, "field_errors": exc.fields}


def _parse_date(raw: str, field: str) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"{field}: enter a date as YYYY-MM-DD.", fields={field: ["Enter a date as YYYY-MM-DD."]}
        ) from exc


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


# --- API tokens -----------------------------------------------------------------------------------------


def _token_form(page: TenantPage, **extra: Any) -> dict[str, Any]:
    grantable = grantable_scopes(page.membership.role)
    tokens = account_selectors.tokens_visible_to(membership=page.membership).order_by("-created_at")
    scope_choices = [
        {"value": s, "description": scope_defs.SCOPE_DESCRIPTIONS[s]}
        for s in scope_defs.ALL_SCOPES
        if s in grantable
    ]
    defaults = dict(
        tokens=tokens,
        scope_choices=scope_choices,
        show_owner=page.can(Perm.TOKENS_MANAGE),
        now=timezone.now(),
        form={"name": "", "scopes": [], "expires_at": ""},
    )
    return _context(page, **{**defaults, **extra})


@tenant_page(Perm.TOKENS_OWN, methods=("GET", "POST"))
def tokens(page: TenantPage) -> HttpResponse:
    request = page.request
    if request.method == "POST":
        form: dict[str, Any] = {
            "name": request.POST.get("name", "").strip(),
            "scopes": request.POST.getlist("scopes"),
            "expires_at": request.POST.get("expires_at", ""),
        }
        try:
            page.require_status()
            expires_on = _parse_date(form["expires_at"], "expires_at")
            data = _validated(ApiTokenCreateSerializer, {"name": form["name"], "scopes": form["scopes"]})
            token, secret = account_services.token_create(
                user=page.user,
                membership=page.membership,
                name=data["name"],
                scopes=data["scopes"],
                expires_at=_day_start(expires_on) if expires_on else None,
            )
        except DomainError as exc:
            context = _token_form(page, **_form_error(exc))
            context["form"] = form
            return render(request, "console/account/tokens.html", context, status=exc.status_code)
        # The only response that ever carries the secret: not cached, not stored, not in a redirect.
        return _no_store(
            render(request, "console/account/token_created.html", _context(page, token=token, secret=secret))
        )
    return render(request, "console/account/tokens.html", _token_form(page))


@tenant_page(Perm.TOKENS_OWN, methods=("GET", "POST"))
def token_revoke(page: TenantPage, token_id: Any) -> HttpResponse:
    token = account_selectors.tokens_visible_to(membership=page.membership).filter(pk=token_id).first()
    if token is None:
        raise Http404("Not found.")
    if page.request.method == "POST":
        try:
            page.require_status(cleanup=True)
            if token.user_id != page.user.pk:
                access.check_permission(membership=page.membership, perm=Perm.TOKENS_MANAGE)
            account_services.token_revoke(actor=page.user, token=token)
        except DomainError as exc:
            context = _context(page, token=token, **_form_error(exc))
            return render(page.request, "console/account/token_revoke.html", context, status=exc.status_code)
        messages.success(page.request, f"Revoked the token {token.name} ({token.prefix}…).")
        return redirect("console:tokens", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/token_revoke.html", _context(page, token=token))


# --- members and invitations ----------------------------------------------------------------------------


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
    context = _members_context(page, **_form_error(exc), **extra)
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
        data = _validated(MembershipUpdateSerializer, {"role": page.request.POST.get("role", "")})
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
            context.update(_form_error(exc))
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
        data = _validated(InvitationCreateSerializer, form)
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
            context.update(_form_error(exc))
            return render(
                page.request, "console/account/invitation_revoke.html", context, status=exc.status_code
            )
        messages.success(page.request, f"Revoked the invitation of {invitation.email}.")
        return redirect("console:members", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/invitation_revoke.html", context)


# --- quotas ---------------------------------------------------------------------------------------------

_RESOURCE_LABELS = {
    "instances": "Instances",
    "gpus": "GPUs (all types)",
    "vcpu": "vCPU",
    "memory_gib": "Memory (GiB)",
    "volume_gib": "Volumes (GiB)",
    "object_storage_gib": "Object storage (GiB)",
}


def _with_percent(row: dict[str, Any]) -> dict[str, Any]:
    limit, used = row["limit"], row["used"]
    percent = min(100, round(used * 100 / limit)) if limit else (100 if used else 0)
    return {**row, "percent": percent, "over": limit == 0 or used >= limit}


def _quotas_context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    overview = quota_selectors.quota_overview(tenant=page.tenant)
    limits = [
        {**_with_percent(r), "label": _RESOURCE_LABELS.get(r["resource"], r["resource"])}
        for r in overview["limits"]
    ]
    defaults = dict(
        limits=limits,
        gpu_rows=[_with_percent(r) for r in overview["gpu_types"]],
        requests=quota_selectors.quota_requests_of(tenant=page.tenant).order_by("-created_at"),
        resources=QuotaResource.choices,
        gpu_types=GpuType.objects.order_by("slug"),
        regions=Region.objects.order_by("slug"),
        form={"resource": "gpus", "gpu_type": "", "region": "", "amount": "", "reason": ""},
    )
    return _context(page, **{**defaults, **extra})


@tenant_page(Perm.TENANT_READ, methods=("GET", "POST"), post_perm=Perm.QUOTA_MANAGE)
def quotas(page: TenantPage) -> HttpResponse:
    if page.request.method == "POST":
        post = page.request.POST
        form = {k: post.get(k, "").strip() for k in ("resource", "gpu_type", "region", "amount", "reason")}
        try:
            page.require_status()
            data = _validated(QuotaRequestCreateSerializer, {k: v for k, v in form.items() if v})
            created = quota_services.quota_request_create(actor=page.user, tenant=page.tenant, **data)
        except DomainError as exc:
            context = _quotas_context(page, **_form_error(exc))
            context["form"] = form
            return render(page.request, "console/account/quotas.html", context, status=exc.status_code)
        messages.success(page.request, f"Asked for {created.amount} ({created.resource}); staff will decide.")
        return redirect("console:quotas", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/quotas.html", _quotas_context(page))


# --- billing --------------------------------------------------------------------------------------------


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def usage_by_gpu_type(*, tenant: Tenant, start: datetime, end: datetime) -> list[tuple[str, Decimal]]:
    """The ledger grouped by instance type, summed per GPU type of the type (CPU for GPU-less types)."""
    rows = billing_selectors.usage_report(tenant=tenant, start=start, end=end, group_by="instance_type")
    gpu_of = {
        slug: (gpu or "CPU")
        for slug, gpu in InstanceType.objects.filter(slug__in=[r["key"] for r in rows]).values_list(
            "slug", "gpu_type__slug"
        )
    }
    totals: dict[str, Decimal] = {}
    for row in rows:
        label = gpu_of.get(row["key"], row["key"])
        totals[label] = totals.get(label, Decimal(0)) + row["amount"]
    return [(label, _cents(amount)) for label, amount in sorted(totals.items())]


def _runway(seconds: int | None) -> str:
    if seconds is None:
        return "No instances are running."
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60} min"


def _billing_context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    now = timezone.now()
    start = billing_selectors.month_start(now)
    wallet = billing_selectors.wallet_of(page.tenant, now)
    alerts = BudgetAlert.objects.filter(tenant=page.tenant, month=start.date()).order_by("threshold")
    status = page.request.GET
    notice = None
    if status.get("topup") == "success":
        notice = "Thank you: the credit appears here as soon as Stripe confirms the payment."
    elif status.get("card") == "success":
        notice = "Your card is saved."
    defaults = dict(
        wallet=wallet,
        balance=_cents(wallet.balance),
        burn_rate=_cents(wallet.burn_rate_per_hour),
        month_to_date=_cents(wallet.month_to_date_spend),
        runway=_runway(wallet.runway_seconds),
        month=start,
        by_day=bar_chart(
            charts.spend_by_day(tenant=page.tenant, start=start, end=now), short=lambda day: day[-2:]
        ),
        by_gpu=bar_chart(usage_by_gpu_type(tenant=page.tenant, start=start, end=now), bar_width=60),
        invoices=invoices_of(tenant=page.tenant).order_by("-month")[:24],
        alerts=alerts,
        payments_configured=stripe_gateway.is_configured(),
        card_on_file=card_on_file(tenant=page.tenant),
        billing_status=billing_status_of(tenant=page.tenant),
        budget_form={
            "monthly_budget": "" if wallet.monthly_budget is None else str(wallet.monthly_budget),
            "hard": wallet.budget_hard,
        },
        topup_form={"amount": ""},
        notice=notice,
    )
    return _context(page, **{**defaults, **extra})


def _billing_error(page: TenantPage, exc: DomainError, **extra: Any) -> HttpResponse:
    context = _billing_context(page, **extra)
    context.update(_form_error(exc))
    return render(page.request, "console/account/billing.html", context, status=exc.status_code)


@tenant_page(Perm.BILLING_READ)
def billing(page: TenantPage) -> HttpResponse:
    return render(page.request, "console/account/billing.html", _billing_context(page))


def _payments_off(page: TenantPage, **extra: Any) -> HttpResponse:
    """Stripe is not configured on this installation: the page says so (payments_configured) instead of
    failing."""
    return render(page.request, "console/account/billing.html", _billing_context(page, **extra))


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_topup(page: TenantPage) -> HttpResponse:
    form = {"amount": page.request.POST.get("amount", "").strip()}
    try:
        page.require_status(cleanup=True)  # a suspended tenant must still be able to pay, as in the API
        data = _validated(TopupRequestSerializer, form)
        opened = stripe_checkout.checkout_topup_create(
            actor=page.user, tenant=page.tenant, amount=data["amount"]
        )
    except stripe_gateway.StripeNotConfigured:
        return _payments_off(page, topup_form=form, form_name="topup")
    except DomainError as exc:
        return _billing_error(page, exc, topup_form=form, form_name="topup")
    return HttpResponseRedirect(opened.url)


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_card(page: TenantPage) -> HttpResponse:
    try:
        page.require_status(cleanup=True)
        opened = stripe_checkout.checkout_card_setup_create(actor=page.user, tenant=page.tenant)
    except stripe_gateway.StripeNotConfigured:
        return _payments_off(page, form_name="card")
    except DomainError as exc:
        return _billing_error(page, exc, form_name="card")
    return HttpResponseRedirect(opened.url)


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_budget(page: TenantPage) -> HttpResponse:
    post = page.request.POST
    form = {"monthly_budget": post.get("monthly_budget", "").strip(), "hard": post.get("hard") == "on"}
    try:
        page.require_status()
        data = _validated(
            BudgetSerializer, {"monthly_budget": form["monthly_budget"] or None, "hard": form["hard"]}
        )
        billing_services.budget_set(
            actor=page.user, tenant=page.tenant, monthly_budget=data["monthly_budget"], hard=data["hard"]
        )
    except DomainError as exc:
        return _billing_error(page, exc, budget_form=form, form_name="budget")
    if data["monthly_budget"] is None:
        messages.success(page.request, "The monthly budget is removed.")
    else:
        kind = "hard" if data["hard"] else "soft"
        messages.success(page.request, f"The monthly budget is {data['monthly_budget']} ({kind}).")
    return redirect("console:billing", tenant_slug=page.tenant.slug)


# --- audit log ------------------------------------------------------------------------------------------


@tenant_page(Perm.AUDIT_READ)
def audit(page: TenantPage) -> HttpResponse:
    get = page.request.GET
    filters = {k: get.get(k, "").strip() for k in ("action", "actor", "since", "until")}
    events = audit_events_of(tenant=page.tenant).order_by("-created_at", "-id")
    try:
        since = _parse_date(filters["since"], "since")
        until = _parse_date(filters["until"], "until")
        if since and until and until < since:
            raise InvalidInput(
                "until: must not be before since.", fields={"until": ["Must not be before since."]}
            )
    except DomainError as exc:
        context = _context(page, filters=filters, page_obj=None, querystring="", **_form_error(exc))
        return render(page.request, "console/account/audit.html", context, status=exc.status_code)
    if filters["action"]:
        events = events.filter(action__startswith=filters["action"].rstrip("*"))
    if filters["actor"]:
        events = events.filter(actor_label__iexact=filters["actor"])
    if since:
        events = events.filter(created_at__gte=_day_start(since))
    if until:  # inclusive: the whole day
        events = events.filter(created_at__lt=_day_start(until + timedelta(days=1)))
    page_obj = Paginator(events, AUDIT_PAGE_SIZE).get_page(get.get("page"))
    kept = page.request.GET.copy()
    kept.pop("page", None)
    context = _context(page, filters=filters, page_obj=page_obj, querystring=kept.urlencode())
    return render(page.request, "console/account/audit.html", context)
