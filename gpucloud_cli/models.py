"""Types of the gpucloud REST API, generated from its OpenAPI schema: do not edit.

Regenerate with `python scripts/gen_sdk_models.py` after changing the API (a test fails while this file is
out of date). Responses are TypedDicts: plain dicts at runtime, checked by type checkers. Decimal amounts
and timestamps travel as strings, as in the JSON.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

API_VERSION = "1.0.0"


class AccessKey(TypedDict):
    id: str
    name: str
    access_key_id: str
    active: bool
    suspended: bool
    created_by: str | None
    created_at: str
    revoked_at: str | None


class AccessKeyCreateRequest(TypedDict):
    name: str


class AccessKeyCreated(TypedDict):
    id: str
    name: str
    access_key_id: str
    active: bool
    suspended: bool
    created_by: str | None
    created_at: str
    revoked_at: str | None
    secret_access_key: str | None
    endpoint_url: str
    region: str


AccessModeEnum = Literal["ReadWriteOnce", "ReadWriteMany"]


AccessServiceTypeEnum = Literal["NodePort", "LoadBalancer", "ClusterIP"]


class ApiToken(TypedDict):
    id: str
    name: str
    prefix: str
    user: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    active: bool
    parent: str | None


class ApiTokenCreateRequest(TypedDict):
    name: str
    scopes: list[ScopesEnum]
    expires_at: NotRequired[str | None]


class ApiTokenCreated(TypedDict):
    id: str
    name: str
    prefix: str
    user: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    active: bool
    parent: str | None
    token: str | None


class Attachment(TypedDict):
    volume_id: str
    name: str
    mount_path: str
    size_gib: int
    access_mode: str
    state: str
    delete_with_instance: bool


class AuditEvent(TypedDict):
    id: int
    created_at: str
    actor: str
    token: str | None
    via: str
    action: str
    target_type: str
    target_id: str
    changes: Any
    metadata: Any
    ip: str | None
    request_id: str


class Balance(TypedDict):
    balance: str
    credits: str
    usage: str
    burn_rate_per_hour: str
    runway_seconds: int | None
    month_to_date_spend: str
    mode: ModeEnum
    credit_limit: str
    currency: str
    as_of: str


class BillingMode(TypedDict):
    mode: ModeEnum
    credit_limit: NotRequired[str]


class BillingModeRequest(TypedDict):
    mode: ModeEnum
    credit_limit: NotRequired[str]


class Bucket(TypedDict):
    id: str
    name: str
    tags: dict[str, str]
    physical_name: str
    size_bytes: int
    object_count: int
    usage_sampled_at: str | None
    created_by: str | None
    created_at: str


class BucketCreateRequest(TypedDict):
    name: str
    tags: NotRequired[dict[str, str]]


class BudgetRequest(TypedDict):
    monthly_budget: str | None
    hard: NotRequired[bool]


class BudgetStatus(TypedDict):
    monthly_budget: str | None
    hard: NotRequired[bool]
    month_to_date_spend: str
    alerts_sent: list[int]


class Checkout(TypedDict):
    checkout_url: str
    session_id: str


class Cluster(TypedDict):
    id: str
    name: str
    tags: dict[str, str]
    state: ClusterStateEnum
    desired_state: DesiredStateEnum
    failure_reason: str
    state_message: str
    allowed_actions: list[str]
    region: str
    instance_type: str
    node_count: int
    placement: PlacementEnum
    block: str
    zone: str
    on_node_failure: OnNodeFailureEnum
    image: str
    command: Any
    env_names: list[str]
    auto_stop_after: int | None
    max_runtime: int | None
    price_per_hour: str
    cluster_price_per_hour: str
    nodes: list[ClusterNode]
    created_at: str
    updated_at: str
    state_changed_at: str
    terminated_at: str | None


class ClusterCreateRequest(TypedDict):
    name: NotRequired[str]
    instance_type: str
    region: str
    image: str
    node_count: int
    placement: NotRequired[PlacementEnum]
    on_node_failure: NotRequired[OnNodeFailureEnum]
    ssh_key_ids: NotRequired[list[str]]
    env: NotRequired[dict[str, str]]
    command: NotRequired[list[str]]
    auto_stop_after: NotRequired[int | None]
    max_runtime: NotRequired[int | None]
    volumes: NotRequired[list[VolumeMountRequest]]
    tags: NotRequired[dict[str, str]]
    zone: NotRequired[str | None]


class ClusterEvent(TypedDict):
    id: int
    created_at: str
    kind: str
    name: str
    from_state: str
    to_state: str
    reason: str
    message: str
    billable: bool
    actor: str
    request_id: str
    instance_id: str
    rank: int


class ClusterNode(TypedDict):
    rank: int | None
    instance_id: str
    name: str
    state: InstanceStateEnum
    connection: InstanceConnection


ClusterStateEnum = Literal[
    "pending",
    "provisioning",
    "running",
    "degraded",
    "stopping",
    "stopped",
    "starting",
    "terminating",
    "terminated",
    "failed",
]


class CreditGrant(TypedDict):
    id: str
    kind: KindEnum
    amount: str
    reversed: str
    remaining: str
    reason: NotRequired[str]
    expires_at: NotRequired[str | None]
    expired: bool
    created_at: NotRequired[str]


class CreditGrantCreateRequest(TypedDict):
    kind: NotRequired[KindEnum]
    amount: str
    reason: str
    expires_at: NotRequired[str | None]


DesiredStateEnum = Literal["running", "stopped", "terminated"]


class Error(TypedDict):
    error: ErrorDetail


class ErrorDetail(TypedDict):
    code: str
    message: str
    fields: dict[str, list[str]]


class GpuLimit(TypedDict):
    gpu_type: str
    region: str | None
    limit: int
    used: int


class GpuType(TypedDict):
    slug: str
    vendor: str
    model: str
    memory_gib: int
    product_label: str
    resource_name: str
    is_fractional: bool


class Image(TypedDict):
    slug: str
    name: str
    reference: str
    description: str
    command: Any
    regions: list[str]


class Instance(TypedDict):
    id: str
    name: str
    tags: dict[str, str]
    state: InstanceStateEnum
    desired_state: DesiredStateEnum
    failure_reason: str
    state_message: str
    allowed_actions: list[str]
    region: str
    zone: str
    instance_type: str
    gpu_type: str | None
    gpu_count: int
    vcpu: int
    memory_gib: int
    ephemeral_disk_gib: int
    image: str
    ssh_key_ids: list[str]
    volumes: list[Attachment]
    env_names: list[str]
    command: Any
    auto_stop_after: int | None
    max_runtime: int | None
    price_per_hour: str
    cost_so_far: str
    running_seconds: int
    billed_seconds: int
    connection: InstanceConnection
    cluster: str | None
    rank: int | None
    created_at: str
    updated_at: str
    running_since: str | None
    billing_since: str | None
    state_changed_at: str
    stopped_at: str | None
    terminated_at: str | None


class InstanceConnection(TypedDict):
    host: NotRequired[str]
    port: NotRequired[int]
    user: NotRequired[str]
    ssh_command: NotRequired[str]
    host_key: NotRequired[str]
    known_hosts: NotRequired[str]


class InstanceEvent(TypedDict):
    id: int
    created_at: str
    kind: str
    name: str
    from_state: str
    to_state: str
    reason: str
    message: str
    billable: bool
    actor: str
    request_id: str


class InstanceLaunchRequest(TypedDict):
    name: NotRequired[str]
    instance_type: str
    region: str
    image: str
    ssh_key_ids: NotRequired[list[str]]
    env: NotRequired[dict[str, str]]
    command: NotRequired[list[str]]
    auto_stop_after: NotRequired[int | None]
    max_runtime: NotRequired[int | None]
    volumes: NotRequired[list[VolumeMountRequest]]
    tags: NotRequired[dict[str, str]]
    zone: NotRequired[str | None]


class InstanceLog(TypedDict):
    instance: str
    available: bool
    reason: InstanceLogReasonEnum | NullEnum | None
    message: str | None
    lines: list[str]
    truncated: bool
    last_timestamp: str | None


InstanceLogReasonEnum = Literal["terminated", "logs_unavailable", "no_pod", "no_container", "error"]


InstanceStateEnum = Literal[
    "pending",
    "provisioning",
    "running",
    "stopping",
    "stopped",
    "starting",
    "terminating",
    "terminated",
    "failed",
]


class InstanceType(TypedDict):
    slug: str
    name: str
    gpu_type: str | None
    gpu_count: int
    vcpu: int
    memory_gib: int
    ephemeral_disk_gib: int
    price_per_hour: str
    whole_node: bool
    regions: list[RegionAvailability]


class Invitation(TypedDict):
    id: str
    email: str
    role: RoleEnum
    state: str
    invited_by: str
    created_at: str
    expires_at: str
    accepted_at: str | None
    revoked_at: str | None


class InvitationAcceptRequest(TypedDict):
    token: str


class InvitationCreateRequest(TypedDict):
    email: str
    role: RoleEnum


class Invoice(TypedDict):
    id: str
    number: str | None
    status: InvoiceStatusEnum
    month: str
    period_start: str
    period_end: str
    currency: str
    subtotal: str
    credits_applied: str
    total: str
    payment_status: PaymentStatusEnum
    created_at: str
    finalized_at: str | None


class InvoiceCluster(TypedDict):
    id: str
    name: str
    node_count: int
    quantity_seconds: int
    quantity_hours: str
    amount: str


class InvoiceDetail(TypedDict):
    id: str
    number: str | None
    status: InvoiceStatusEnum
    month: str
    period_start: str
    period_end: str
    currency: str
    subtotal: str
    credits_applied: str
    total: str
    payment_status: PaymentStatusEnum
    created_at: str
    finalized_at: str | None
    lines: list[InvoiceLine]
    clusters: list[InvoiceCluster]


class InvoiceLine(TypedDict):
    position: int
    meter: str
    description: str
    cluster: str | None
    cluster_name: str | None
    rank: int | None
    quantity_seconds: int
    quantity_hours: str
    unit_price_per_hour: str
    amount: str


InvoiceStatusEnum = Literal["draft", "finalized"]


KindEnum = Literal["paid", "promotional"]


class Limit(TypedDict):
    resource: str
    limit: int
    used: int


class Me(TypedDict):
    id: int
    email: str
    full_name: str
    email_verified: bool
    is_staff: bool
    date_joined: str
    memberships: list[MembershipBrief]
    token: TokenBrief | None


class Membership(TypedDict):
    id: str
    user: UserSummary
    role: RoleEnum
    created_at: str


class MembershipBrief(TypedDict):
    tenant: str
    tenant_name: str
    tenant_status: str
    role: str


MethodEnum = Literal["get", "put"]


ModeEnum = Literal["prepaid", "postpaid"]


NullEnum = Literal[None]


OnNodeFailureEnum = Literal["replace", "stop", "fail"]


class PaginatedAccessKeyList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[AccessKey]


class PaginatedApiTokenList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[ApiToken]


class PaginatedAuditEventList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[AuditEvent]
    count_exact: bool


class PaginatedBucketList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Bucket]


class PaginatedClusterEventList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[ClusterEvent]
    count_exact: bool


class PaginatedClusterList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Cluster]
    count_exact: bool


class PaginatedCreditGrantList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[CreditGrant]


class PaginatedGpuTypeList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[GpuType]


class PaginatedImageList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Image]


class PaginatedInstanceEventList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[InstanceEvent]
    count_exact: bool


class PaginatedInstanceList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Instance]
    count_exact: bool


class PaginatedInstanceTypeList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[InstanceType]


class PaginatedInvitationList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Invitation]


class PaginatedInvoiceList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Invoice]


class PaginatedMembershipList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Membership]


class PaginatedQuotaRequestList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[QuotaRequest]


class PaginatedRegionList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Region]


class PaginatedSshKeyList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[SshKey]


class PaginatedTagBudgetList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[TagBudget]


class PaginatedTenantList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Tenant]


class PaginatedVolumeList(TypedDict):
    count: int
    next: NotRequired[str | None]
    previous: NotRequired[str | None]
    results: list[Volume]
    count_exact: bool


class PatchedBucketUpdateRequest(TypedDict):
    tags: NotRequired[dict[str, str | None]]


class PatchedClusterUpdateRequest(TypedDict):
    tags: NotRequired[dict[str, str | None]]


class PatchedInstanceUpdateRequest(TypedDict):
    name: NotRequired[str]
    tags: NotRequired[dict[str, str | None]]


class PatchedMembershipUpdateRequest(TypedDict):
    role: NotRequired[RoleEnum]


class PatchedTagBudgetUpdateRequest(TypedDict):
    monthly_amount: NotRequired[str]


class PatchedTenantUpdateRequest(TypedDict):
    name: NotRequired[str]


class PatchedVolumeUpdateRequest(TypedDict):
    name: NotRequired[str]
    size_gib: NotRequired[int]
    tags: NotRequired[dict[str, str | None]]


PaymentStatusEnum = Literal[
    "nothing_due",
    "prepaid",
    "pending",
    "open",
    "payment_failed",
    "paid",
    "void",
    "uncollectible",
]


PlacementEnum = Literal["block", "any"]


class Portal(TypedDict):
    portal_url: str


class PresignRequest(TypedDict):
    method: MethodEnum
    key: str
    expires_in: NotRequired[int]
    content_length: NotRequired[int]


class PresignedUrl(TypedDict):
    method: str
    url: str
    expires_at: str
    content_length: int | None


class QuotaOverview(TypedDict):
    limits: list[Limit]
    gpu_types: list[GpuLimit]


class QuotaRequest(TypedDict):
    id: str
    resource: ResourceEnum
    gpu_type: str | None
    region: str | None
    amount: int
    reason: str
    status: QuotaStatusEnum
    requested_by: str
    created_at: str
    decided_at: str | None
    decision_note: str


class QuotaRequestCreateRequest(TypedDict):
    resource: ResourceEnum
    gpu_type: NotRequired[str]
    region: NotRequired[str]
    amount: int
    reason: str


QuotaStatusEnum = Literal["pending", "approved", "denied"]


class Region(TypedDict):
    slug: str
    name: str
    status: RegionStatusEnum
    zones: list[str]
    storage_class: str
    access_service_type: AccessServiceTypeEnum
    max_cluster_nodes: int


class RegionAvailability(TypedDict):
    region: str
    available: int
    whole_nodes_free: dict[str, int]
    zones: dict[str, int]


RegionStatusEnum = Literal["available", "degraded", "maintenance"]


ResourceEnum = Literal[
    "gpus",
    "gpu_type",
    "instances",
    "vcpu",
    "memory_gib",
    "volume_gib",
    "object_storage_gib",
]


RoleEnum = Literal["owner", "admin", "member", "billing", "viewer"]


ScopesEnum = Literal[
    "tenant:read",
    "tenant:admin",
    "instances:read",
    "instances:write",
    "billing:read",
    "billing:write",
    "storage:read",
    "storage:write",
]


class SshKey(TypedDict):
    id: str
    name: str
    key_type: str
    bits: int
    fingerprint: str
    public_key: str
    private: bool
    created_by: str
    created_at: str


class SshKeyCreateRequest(TypedDict):
    name: str
    public_key: str
    private: NotRequired[bool]


class TagBudget(TypedDict):
    id: str
    key: str
    value: str
    monthly_amount: str
    month_to_date_spend: str
    percent_used: str
    alerts_sent: list[int]
    created_at: str
    updated_at: str


class TagBudgetCreateRequest(TypedDict):
    key: str
    value: str
    monthly_amount: str


class Tenant(TypedDict):
    id: str
    slug: str
    name: str
    status: TenantStatusEnum
    status_reason: str
    created_at: str
    role: str | None


class TenantCreateRequest(TypedDict):
    name: str
    slug: NotRequired[str]


TenantStatusEnum = Literal["active", "suspended", "closed"]


class TokenBrief(TypedDict):
    id: str
    name: str
    tenant: str
    scopes: list[str]
    expires_at: str | None


class TopupRequestRequest(TypedDict):
    amount: str


class UsageCluster(TypedDict):
    id: str
    name: str
    node_count: int
    quantity_seconds: int
    quantity_hours: str
    amount: str


class UsageExportLine(TypedDict):
    id: str
    resource_type: str
    resource_id: str
    resource_name: str
    meter: str
    period_start: str
    period_end: str
    quantity_seconds: int
    unit_price_per_hour: str
    amount: str
    kind: str
    reverses: str | None
    tags: dict[str, str]


class UsageGroup(TypedDict):
    key: str | None
    name: str
    cluster: str | None
    cluster_name: str | None
    rank: int | None
    quantity_seconds: int
    quantity_hours: str
    amount: str


UsageReport = TypedDict(
    "UsageReport",
    {
        "group_by": str,
        "tags": dict[str, str],
        "total": str,
        "results": list[UsageGroup],
        "clusters": list[UsageCluster],
        "from": str,
        "to": str,
    },
)


class UserSummary(TypedDict):
    id: int
    email: str
    full_name: str


class Volume(TypedDict):
    id: str
    name: str
    tags: dict[str, str]
    region: str
    zone: str
    size_gib: int
    storage_class: str
    access_mode: AccessModeEnum
    multi_attach: bool
    state: VolumeStateEnum
    state_message: str
    price_per_gib_hour: str
    price_per_hour: str
    attachments: list[dict[str, Any]]
    created_at: str
    updated_at: str
    deleted_at: str | None


class VolumeCreateRequest(TypedDict):
    name: str
    region: str
    size_gib: int
    tags: NotRequired[dict[str, str]]
    zone: NotRequired[str]


class VolumeMountRequest(TypedDict):
    volume_id: str
    mount_path: str


VolumeStateEnum = Literal["creating", "available", "in_use", "resizing", "deleting", "deleted", "failed"]
