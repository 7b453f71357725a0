import logging

from apps.core import request_context


class RequestContextFilter(logging.Filter):
    """Adds the request id to every log record (Django's own request logs carry the request itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or request_context.current().request_id
        return True
