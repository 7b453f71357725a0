"""Who is acting and from where, for the duration of one request, task or command.

Audit events and log lines read it instead of having a request threaded through every service.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    request_id: str = "-"
    ip: str | None = None
    via: str = "system"  # api, console, admin, command, task, system
    token_id: Any = None
    # For log lines (apps/core/logging.py): who acts, in which tenant, on which instance.
    tenant: str | None = None  # slug
    actor: str | None = None  # "user:<id>"
    instance_id: str | None = None


_DEFAULT = RequestContext()  # frozen, so sharing it as the default is safe
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "gpucloud_request_context",
    default=_DEFAULT,
)


def current() -> RequestContext:
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def bind(**changes: Any) -> Iterator[RequestContext]:
    """Set fields of the context inside a block; restores the previous context afterwards."""
    ctx = replace(_current.get(), **changes)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def update(**changes: Any) -> None:
    """Change the current context in place (used once authentication has identified a token)."""
    _current.set(replace(_current.get(), **changes))
