"""The usage export: a tenant's ledger rows in a range, one line each, as CSV or JSON (docs/billing.md
"Exports"), for the API, the console and the CLI.

`usage_lines` reads through a server-side cursor in chunks, so a month of a large tenant streams with the
memory of one chunk; the resources' names are looked up a chunk at a time, once per resource. `csv_chunks`
and `json_chunks` encode the lines a chunk per piece of text, and `download` wraps them in a streaming
response. Money stays Decimal and travels as strings with the ledger's places (prices 4, amounts 6).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from django.db import models, transaction
from django.db.models import DateTimeField, F, Func
from django.http import StreamingHttpResponse

from apps.billing.models import UsageRecord
from apps.instances.models import Instance
from apps.storage.models import Volume
from apps.storage.objects.models import Bucket
from apps.tenants.models import Tenant

FORMATS = ("csv", "json")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
COLUMNS = (
    "id",
    "resource_type",
    "resource_id",
    "resource_name",
    "meter",
    "period_start",
    "period_end",
    "quantity_seconds",
    "unit_price_per_hour",
    "amount",
    "kind",
    "reverses",
    "tags",
)
CHUNK_ROWS = 2000
_FIELDS = (
    "id",
    "resource_type",
    "resource_id",
    "meter",
    "quantity_seconds",
    "unit_price_per_hour",
    "amount",
    "kind",
    "reverses_id",
    "tags",
)
_NAMED: dict[str, type[models.Model]] = {"instance": Instance, "volume": Volume, "bucket": Bucket}


def _bound(function: str) -> Func:
    return Func(F("period"), function=function, output_field=DateTimeField())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _names(tenant: Tenant, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The names of the tenant's resources among `keys` ((resource type, id) pairs): one query per type."""
    found: dict[tuple[str, str], str] = {}
    for resource_type, model in _NAMED.items():
        ids = []
        for kind, resource_id in keys:
            if kind == resource_type:
                try:
                    ids.append(uuid.UUID(resource_id))
                except ValueError:
                    continue  # not one of ours (test or legacy rows): no name
        if ids:
            rows = model._default_manager.filter(tenant=tenant, pk__in=ids).values_list("pk", "name")
            found.update(((resource_type, str(pk)), name) for pk, name in rows)
    return found


def usage_lines(
    *, tenant: Tenant, start: datetime, end: datetime, chunk_rows: int = CHUNK_ROWS
) -> Generator[dict[str, Any], None, None]:
    """The tenant's ledger rows whose period starts within [start, end), in time order (then by id), as
    dicts with COLUMNS' keys: money as Decimal, times as datetimes, `resource_name` "" where the resource
    has no name (or is gone)."""
    rows = (
        UsageRecord.objects.filter(tenant=tenant, period__startswith__gte=start, period__startswith__lt=end)
        .order_by("period__startswith", "id")
        # The bounds as two timestamps: psycopg reads them faster than it parses the range's text.
        .values(*_FIELDS, period_start=_bound("lower"), period_end=_bound("upper"))
    )
    names: dict[tuple[str, str], str] = {}
    # One transaction around the cursor: outside one, Django declares it WITH HOLD and PostgreSQL
    # materializes the whole result at once; inside, rows are read a chunk at a time.
    with transaction.atomic():
        stream = rows.iterator(chunk_size=chunk_rows)
        while chunk := list(islice(stream, chunk_rows)):
            unknown = {(r["resource_type"], r["resource_id"]) for r in chunk} - names.keys()
            if unknown:
                names.update(dict.fromkeys(unknown, ""))
                names.update(_names(tenant, unknown))
            for row in chunk:
                row["resource_name"] = names[(row["resource_type"], row["resource_id"])]
                row["reverses"] = row.pop("reverses_id")
                yield row


def _text(value: str) -> str:
    """A name as a spreadsheet cell: a leading = + - @ would start a formula, so it gets a quote."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value


def _plain(line: dict[str, Any]) -> dict[str, Any]:
    """A line with JSON's types: Decimals as strings (their places kept), times as ISO 8601 UTC."""
    return {
        **line,
        "period_start": _iso(line["period_start"]),
        "period_end": _iso(line["period_end"]),
        "unit_price_per_hour": str(line["unit_price_per_hour"]),
        "amount": str(line["amount"]),
    }


def _chunked(lines: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    stream = iter(lines)
    while chunk := list(islice(stream, size)):
        yield chunk


def csv_chunks(lines: Iterable[dict[str, Any]], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """A header, then the lines; tags as a JSON object in one cell, an empty cell for no `reverses`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for chunk in _chunked(lines, chunk_rows):
        buffer.seek(0)
        buffer.truncate()
        for line in chunk:
            plain = _plain(line)
            plain["resource_name"] = _text(plain["resource_name"])
            plain["reverses"] = plain["reverses"] or ""
            plain["tags"] = json.dumps(plain["tags"] or {}, sort_keys=True, separators=(",", ":"))
            writer.writerow([plain[column] for column in COLUMNS])
        yield buffer.getvalue()


def json_chunks(lines: Iterable[dict[str, Any]], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """One JSON array of objects with COLUMNS' keys, one object per line of text."""
    yield "["
    first = True
    for chunk in _chunked(lines, chunk_rows):
        pieces = []
        for line in chunk:
            plain = _plain(line)
            text = json.dumps({column: plain[column] for column in COLUMNS}, separators=(",", ":"))
            pieces.append(("\n" if first else ",\n") + text)
            first = False
        yield "".join(pieces)
    yield "\n]\n"


def filename(tenant: Tenant, start: datetime, end: datetime, fmt: str) -> str:
    return f"usage-{tenant.slug}-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.{fmt}"


def _closing(lines: Generator[dict[str, Any], None, None], text: Iterator[str]) -> Iterator[str]:
    """`text`, then `lines` closed at once, also when the client goes away in the middle: its cursor and
    transaction end before the request's connection is given back."""
    try:
        yield from text
    finally:
        lines.close()


def download(*, tenant: Tenant, start: datetime, end: datetime, fmt: str) -> StreamingHttpResponse:
    """The export as an attachment, streamed: nothing is read before the response is sent."""
    lines = usage_lines(tenant=tenant, start=start.astimezone(UTC), end=end.astimezone(UTC))
    text = csv_chunks(lines) if fmt == "csv" else json_chunks(lines)
    response = StreamingHttpResponse(_closing(lines, text), content_type=CONTENT_TYPES[fmt])
    name = filename(tenant, start.astimezone(UTC), end.astimezone(UTC), fmt)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy in front passes the chunks on as they come
    return response
