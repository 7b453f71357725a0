"""API token scopes. A write scope implies its read scope; tenant:admin implies tenant:read."""

from typing import Final

TENANT_READ: Final = "tenant:read"
TENANT_ADMIN: Final = "tenant:admin"
INSTANCES_READ: Final = "instances:read"
INSTANCES_WRITE: Final = "instances:write"
BILLING_READ: Final = "billing:read"
BILLING_WRITE: Final = "billing:write"
STORAGE_READ: Final = "storage:read"
STORAGE_WRITE: Final = "storage:write"

ALL_SCOPES: Final = (
    TENANT_READ,
    TENANT_ADMIN,
    INSTANCES_READ,
    INSTANCES_WRITE,
    BILLING_READ,
    BILLING_WRITE,
    STORAGE_READ,
    STORAGE_WRITE,
)

SCOPE_DESCRIPTIONS: Final = {
    TENANT_READ: "Read the tenant and its members.",
    TENANT_ADMIN: "Manage members, invitations, API tokens and quota requests; read the audit log.",
    INSTANCES_READ: "List and inspect instances.",
    INSTANCES_WRITE: "Launch, stop, start and terminate instances.",
    BILLING_READ: "Read usage, balance and invoices.",
    BILLING_WRITE: "Manage payment methods, top-ups and budgets.",
    STORAGE_READ: "List and inspect volumes, buckets and storage access keys.",
    STORAGE_WRITE: "Create, resize and delete volumes; manage buckets and storage access keys.",
}

_IMPLIES: Final = {
    TENANT_ADMIN: {TENANT_READ},
    INSTANCES_WRITE: {INSTANCES_READ},
    BILLING_WRITE: {BILLING_READ},
    STORAGE_WRITE: {STORAGE_READ},
}


def expand(scopes: list[str] | tuple[str, ...] | set[str]) -> frozenset[str]:
    """The scopes a token effectively holds, implied ones included."""
    result: set[str] = set()
    for scope in scopes:
        result.add(scope)
        result |= _IMPLIES.get(scope, set())
    return frozenset(result)
