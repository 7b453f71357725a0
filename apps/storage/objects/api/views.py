"""Buckets, presigned URLs and access keys of a tenant: /api/v1/tenants/{slug}/buckets and /access-keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.core.errors import InvalidInput
from apps.core.idempotency import idempotent
from apps.storage.objects import s3, selectors, services
from apps.storage.objects.api.serializers import (
    AccessKeyCreatedSerializer,
    AccessKeyCreateSerializer,
    AccessKeySerializer,
    BucketCreateSerializer,
    BucketSerializer,
    BucketUpdateSerializer,
    PresignedUrlSerializer,
    PresignSerializer,
)
from apps.storage.objects.models import AccessKey, Bucket
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class BucketListView(TenantAPIView):
    permission_map = {"GET": Perm.STORAGE_READ, "POST": Perm.STORAGE_WRITE}
    serializer_class = BucketSerializer
    ordering_fields = ["name", "created_at", "size_bytes"]

    def get_queryset(self) -> QuerySet[Bucket]:
        return selectors.buckets_of(self.tenant).select_related("created_by").order_by("name")

    @extend_schema(
        summary="List buckets",
        description="Sizes and object counts are those of the last usage sample (every 10 minutes).",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(BucketSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a bucket",
        description="The bucket's name on the S3 service (`physical_name`) carries the tenant's prefix, so "
        "names only need to be unique within the tenant. 402 `insufficient_funds` without funds; 409 "
        "`bucket_exists` for a taken name, `quota_exceeded` past the tenant's bucket limit; 503 when the "
        "storage service is unavailable.",
        request=BucketCreateSerializer,
        responses={201: BucketSerializer},
        examples=[
            OpenApiExample("Datasets", request_only=True, value={"name": "datasets", "tags": {"team": "ml"}})
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = BucketCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bucket = services.bucket_create(
            actor=acting_user(request),
            tenant=self.tenant,
            name=serializer.validated_data["name"],
            tags=serializer.validated_data["tags"],
        )
        return Response(BucketSerializer(bucket).data, status=201)


class _BucketView(TenantAPIView):
    serializer_class = BucketSerializer

    def bucket(self) -> Bucket:
        found = selectors.buckets_of(self.tenant).select_related("created_by", "tenant")
        bucket = found.filter(name=self.kwargs["bucket_name"]).first()
        if bucket is None:
            raise Http404
        return bucket


class BucketDetailView(_BucketView):
    permission_map = {"GET": Perm.STORAGE_READ, "PATCH": Perm.STORAGE_WRITE, "DELETE": Perm.STORAGE_WRITE}

    @extend_schema(summary="Show a bucket")
    def get(self, request: Request, tenant_slug: str, bucket_name: str) -> Response:
        return Response(BucketSerializer(self.bucket()).data)

    @extend_schema(
        summary="Change a bucket's tags",
        description="`tags` is a merge patch: a key with a string sets it, a key with null removes it, keys "
        'not named are kept (docs/billing.md "Tags"). No call to the storage service.',
        request=BucketUpdateSerializer,
        responses={200: BucketSerializer},
        examples=[OpenApiExample("Retag", request_only=True, value={"tags": {"team": "research"}})],
    )
    def patch(self, request: Request, tenant_slug: str, bucket_name: str) -> Response:
        bucket = self.bucket()  # another tenant's bucket answers 404 before the body is read
        serializer = BucketUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        updated = services.bucket_tags_update(
            actor=acting_user(request), bucket=bucket, changes=serializer.validated_data["tags"]
        )
        return Response(BucketSerializer(updated).data)

    @extend_schema(
        summary="Delete a bucket",
        description="Only an empty bucket (409 `bucket_not_empty` otherwise), unless `force=true`, which "
        "deletes every object first.",
        parameters=[
            OpenApiParameter(
                "force", OpenApiTypes.BOOL, description="Delete the bucket's objects too.", required=False
            )
        ],
        responses={204: None},
    )
    def delete(self, request: Request, tenant_slug: str, bucket_name: str) -> Response:
        bucket = self.bucket()
        force = _bool_param(request, "force")
        services.bucket_delete(actor=acting_user(request), bucket=bucket, force=force)
        return Response(status=204)


def _bool_param(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{name} must be true or false.", fields={name: ["Must be true or false."]})
    return value in ("true", "1")


class BucketPresignView(_BucketView):
    permission_map = {"POST": Perm.STORAGE_WRITE}

    @extend_schema(
        summary="Presign a URL for one object",
        description="A URL that uploads (`put`) or downloads (`get`) one object without credentials until "
        "it expires (at most 7 days). Anyone holding the URL can use it. It is signed with the tenant's own "
        "presign key, so it stops working while the tenant's keys are suspended. An upload names its size "
        "(`content_length`) and accepts exactly that many bytes; 402 `insufficient_funds` without funds, "
        "409 `quota_exceeded` when the size does not fit in what is left of the byte quota.",
        request=PresignSerializer,
        responses={200: PresignedUrlSerializer},
        examples=[
            OpenApiExample(
                "Upload",
                request_only=True,
                value={"method": "put", "key": "train/part-0001.parquet", "content_length": 1048576},
            )
        ],
    )
    def post(self, request: Request, tenant_slug: str, bucket_name: str) -> Response:
        bucket = self.bucket()  # another tenant's bucket answers 404 before the body is read
        serializer = PresignSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        url = services.bucket_presign(
            bucket=bucket,
            method=data["method"],
            key=data["key"],
            expires_in=data["expires_in"],
            content_length=data.get("content_length"),
        )
        expires_at = timezone.now() + timedelta(seconds=data["expires_in"])
        return Response(
            {
                "method": data["method"].upper(),
                "url": url,
                "expires_at": expires_at,
                "content_length": data.get("content_length"),
            }
        )


class AccessKeyListView(TenantAPIView):
    permission_map = {"GET": Perm.STORAGE_READ, "POST": Perm.STORAGE_WRITE}
    serializer_class = AccessKeySerializer
    ordering_fields = ["created_at", "name"]

    def get_queryset(self) -> QuerySet[AccessKey]:
        return selectors.access_keys_of(self.tenant).select_related("created_by").order_by("created_at")

    @extend_schema(
        summary="List storage access keys", description="Active keys; revoked ones are not listed."
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AccessKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Create a storage access key",
        description="An S3 access key that reaches only this tenant's buckets (objects and listing; buckets "
        "are created and deleted through this API). The secret is in `secret_access_key` of this response "
        "and is never shown again; a replay with the same Idempotency-Key returns it as null. 402 "
        "`insufficient_funds` without funds. While the tenant is suspended or out of funds its keys are "
        "suspended (`suspended: true`): refused by the service, kept, and working again afterwards.",
        request=AccessKeyCreateSerializer,
        responses={201: AccessKeyCreatedSerializer},
        examples=[OpenApiExample("Training job", request_only=True, value={"name": "training"})],
    )
    @idempotent(secret_fields=("secret_access_key",))
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = AccessKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = services.access_key_create(
            actor=acting_user(request), tenant=self.tenant, name=serializer.validated_data["name"]
        )
        conf = s3.config()
        data = {
            **AccessKeySerializer(created.key).data,
            "secret_access_key": created.secret_access_key,
            "endpoint_url": conf.public_endpoint_url,
            "region": conf.region,
        }
        return Response(data, status=201)


class AccessKeyDetailView(TenantAPIView):
    permission_map = {"GET": Perm.STORAGE_READ, "DELETE": Perm.STORAGE_WRITE}
    serializer_class = AccessKeySerializer
    lookup_url_kwarg = "access_key_id"

    def get_queryset(self) -> QuerySet[AccessKey]:
        return selectors.access_keys_of(self.tenant, include_revoked=True).select_related("created_by")

    @extend_schema(summary="Show a storage access key")
    def get(self, request: Request, tenant_slug: str, access_key_id: str) -> Response:
        return Response(AccessKeySerializer(self.get_object()).data)

    @extend_schema(
        summary="Revoke a storage access key",
        description="The key stops working at once; revoking a revoked key changes nothing.",
        responses={200: AccessKeySerializer},
    )
    def delete(self, request: Request, tenant_slug: str, access_key_id: str) -> Response:
        key = services.access_key_revoke(actor=acting_user(request), key=self.get_object())
        return Response(AccessKeySerializer(key).data)
